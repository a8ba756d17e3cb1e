//! Provider identity → hub user: the user name claim, groups, `allowed_groups`, `admin_groups`,
//! `required_scopes`. Pure functions over the merged claims, shared by every OAuth authenticator.

use hubfleet_config::OAuthSettings;
use hubfleet_types::auth::AuthState;
use hubfleet_types::{AuthError, AuthenticatedUser, UserName};
use serde_json::Value;

/// A claim by name; `a.b` reaches into nested objects. Numbers are turned into strings.
pub(crate) fn claim_str(claims: &Value, name: &str) -> Option<String> {
    let mut value = claims;
    for part in name.split('.') {
        value = value.get(part)?;
    }
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list-of-strings claim (a single string counts as a one-element list).
pub(crate) fn claim_list(claims: &Value, name: &str) -> Vec<String> {
    let mut value = claims;
    for part in name.split('.') {
        match value.get(part) {
            Some(v) => value = v,
            None => return Vec::new(),
        }
    }
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Refuses unless every `required_scopes` entry was granted.
pub(crate) fn check_scopes(settings: &OAuthSettings, granted: &[String]) -> Result<(), AuthError> {
    let missing: Vec<&str> = settings
        .required_scopes
        .iter()
        .filter(|s| !granted.contains(s))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AuthError::Refused(format!(
            "The identity provider did not grant the scopes this hub requires ({}).",
            missing.join(", ")
        )))
    }
}

/// Parses the provider's user name into a hub user name.
pub(crate) fn user_name(raw: Option<String>, claim: &str) -> Result<UserName, AuthError> {
    let raw = raw.ok_or_else(|| {
        AuthError::Refused(format!(
            "The identity provider did not say who you are (no `{claim}` claim)."
        ))
    })?;
    UserName::parse(&raw).map_err(|e| {
        AuthError::Refused(format!(
            "The identity provider's user name {raw:?} cannot be used here: {e}"
        ))
    })
}

/// Builds the authenticated user from its name and provider groups.
pub(crate) fn decide(
    settings: &OAuthSettings,
    name: UserName,
    groups: Vec<String>,
    auth_state: AuthState,
) -> AuthenticatedUser {
    let in_any = |list: &[String]| groups.iter().any(|g| list.contains(g));
    let admin = (!settings.admin_groups.is_empty()).then(|| in_any(&settings.admin_groups));
    let allowed = in_any(&settings.allowed_groups) || admin == Some(true);
    AuthenticatedUser {
        name,
        admin,
        allowed,
        groups: settings.manage_groups.then_some(groups),
        roles: None,
        auth_state: settings.auth_state_key.is_some().then_some(auth_state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_by_path_and_lists() {
        let c = json!({"a": {"b": "x"}, "n": 5, "g": ["s", "t"], "one": "u", "empty": ""});
        assert_eq!(claim_str(&c, "a.b").as_deref(), Some("x"));
        assert_eq!(claim_str(&c, "n").as_deref(), Some("5"));
        assert_eq!(claim_str(&c, "empty"), None);
        assert_eq!(claim_str(&c, "missing"), None);
        assert_eq!(claim_list(&c, "g"), ["s", "t"]);
        assert_eq!(claim_list(&c, "one"), ["u"]);
        assert!(claim_list(&c, "none").is_empty());
    }

    fn settings() -> OAuthSettings {
        OAuthSettings {
            client_id: "hub".into(),
            client_secret: None,
            callback_url: None,
            issuer: None,
            authorize_url: None,
            token_url: None,
            userdata_url: None,
            jwks_url: None,
            api_url: None,
            scopes: vec!["openid".into()],
            username_claim: "preferred_username".into(),
            groups_claim: Some("groups".into()),
            allowed_groups: vec!["staff".into()],
            admin_groups: vec!["admins".into()],
            manage_groups: true,
            manage_roles: false,
            roles_claim: "roles".into(),
            required_scopes: vec!["groups".into()],
            allowed_organizations: Vec::new(),
            allowed_idps: Default::default(),
            auth_state_key: None,
        }
    }

    #[test]
    fn groups_decide_allowed_admin_and_membership() {
        let s = settings();
        let name = || UserName::parse("a").unwrap();
        let state = || AuthState(json!({}));
        let staff = decide(&s, name(), vec!["staff".into()], state());
        assert!(staff.allowed);
        assert_eq!(staff.admin, Some(false));
        assert_eq!(staff.groups.as_deref(), Some(&["staff".to_string()][..]));
        assert!(staff.auth_state.is_none(), "auth state off without a key");
        let admin = decide(&s, name(), vec!["admins".into()], state());
        assert!(admin.allowed && admin.admin == Some(true));
        let other = decide(&s, name(), vec!["visitors".into()], state());
        assert!(!other.allowed);
        let unmanaged = decide(
            &OAuthSettings {
                manage_groups: false,
                admin_groups: Vec::new(),
                ..settings()
            },
            name(),
            vec!["staff".into()],
            state(),
        );
        assert_eq!(unmanaged.groups, None);
        assert_eq!(unmanaged.admin, None);
    }

    #[test]
    fn required_scopes_must_all_be_granted() {
        let s = settings();
        assert!(check_scopes(&s, &["openid".into(), "groups".into()]).is_ok());
        assert!(matches!(
            check_scopes(&s, &["openid".into()]),
            Err(AuthError::Refused(m)) if m.contains("groups")
        ));
    }

    #[test]
    fn user_names_are_normalised_or_refused() {
        assert_eq!(
            user_name(Some("Alice".into()), "x").unwrap().as_str(),
            "alice"
        );
        assert!(matches!(user_name(None, "x"), Err(AuthError::Refused(_))));
        assert!(matches!(
            user_name(Some("a/b".into()), "x"),
            Err(AuthError::Refused(_))
        ));
    }
}
