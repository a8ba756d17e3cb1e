//! Spawner backends; today the local-process spawner and the default user-environment provisioner.
