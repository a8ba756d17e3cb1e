//! Reading the `Cookie` header and writing `Set-Cookie` values with the attributes the hub's
//! security rules require (HttpOnly, SameSite=Lax, Secure under TLS).

use http::HeaderMap;

/// Name of the hub login cookie (JupyterHub's name, path `<base>hub/`).
pub const LOGIN_COOKIE: &str = "jupyterhub-hub-login";
/// The public session id cookie single-user servers read (path `<base>`).
pub const SESSION_ID_COOKIE: &str = "jupyterhub-session-id";
/// Double-submit XSRF cookie (path `<base>hub/`).
pub const XSRF_COOKIE: &str = "_xsrf";

/// The value of cookie `name`, if the request carries it. When several cookies share the name
/// (different paths), the first — the most specific path, as browsers order them — wins.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_string())
}

pub struct CookieAttrs<'a> {
    pub path: &'a str,
    pub secure: bool,
    pub max_age_seconds: Option<u64>,
}

pub fn set(name: &str, value: &str, attrs: &CookieAttrs<'_>) -> String {
    let mut cookie = format!(
        "{name}={value}; Path={}; HttpOnly; SameSite=Lax",
        attrs.path
    );
    if attrs.secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = attrs.max_age_seconds {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

pub fn clear(name: &str, path: &str) -> String {
    format!(
        "{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookie_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, "a=1; _xsrf=abc; b=2".parse().unwrap());
        assert_eq!(get(&headers, "_xsrf").as_deref(), Some("abc"));
        assert_eq!(get(&headers, "missing"), None);
    }

    #[test]
    fn set_cookie_has_security_attributes() {
        let attrs = CookieAttrs {
            path: "/hub/",
            secure: true,
            max_age_seconds: Some(60),
        };
        let cookie = set("x", "y", &attrs);
        assert!(cookie.contains("HttpOnly"));
        assert!(cookie.contains("SameSite=Lax"));
        assert!(cookie.contains("Secure"));
        assert!(cookie.contains("Path=/hub/"));
    }
}
