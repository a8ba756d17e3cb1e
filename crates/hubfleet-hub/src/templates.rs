//! Server-rendered HTML: Jinja templates (embedded at build time) rendered with minijinja.

use minijinja::Environment;
use serde::Serialize;

use crate::HubError;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    ("home.html", include_str!("../templates/home.html")),
    (
        "spawn_pending.html",
        include_str!("../templates/spawn_pending.html"),
    ),
    (
        "not_running.html",
        include_str!("../templates/not_running.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
    (
        "accept_share.html",
        include_str!("../templates/accept_share.html"),
    ),
    (
        "oauth_confirm.html",
        include_str!("../templates/oauth_confirm.html"),
    ),
    ("admin.html", include_str!("../templates/admin.html")),
    (
        "admin_user.html",
        include_str!("../templates/admin_user.html"),
    ),
    (
        "admin_token.html",
        include_str!("../templates/admin_token.html"),
    ),
    (
        "admin_flash.html",
        include_str!("../templates/admin_flash.html"),
    ),
];

pub(crate) const HUB_CSS: &str = include_str!("../templates/hub.css");

pub(crate) struct Templates {
    env: Environment<'static>,
    hub_prefix: String,
}

impl Templates {
    pub fn new(base_url: &str) -> Result<Templates, HubError> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Templates {
            env,
            hub_prefix: format!("{base_url}hub/"),
        })
    }

    /// Renders `name` with `context` plus `hub_prefix`, which every page needs for its links.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, HubError> {
        let template = self.env.get_template(name)?;
        let context = minijinja::context! { hub_prefix => &self.hub_prefix, ..minijinja::Value::from(minijinja::value::Serde(context)) };
        Ok(template.render(context)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes() {
        let templates = Templates::new("/").unwrap();
        let html = templates
            .render(
                "error.html",
                minijinja::context! { status => 403, reason => "Forbidden", message => "<script>", user => "a" },
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;"));
        assert!(
            html.contains("static/hub.css"),
            "the stylesheet link is rendered"
        );
    }
}
