//! The dashboard's files, built into the binary: one HTML page, its stylesheet and script. No
//! external URL (no CDN, no web font): the page works on a hub without internet.

/// `(path, content type, body)` of every asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
];

/// The asset served at `path`.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ctype, body)| (*ctype, *body))
}

/// The `Content-Security-Policy` of every page: its own origin only.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_name_no_external_url() {
        for (path, _, body) in ASSETS {
            for scheme in ["http://", "https://", "//cdn", "url(http"] {
                assert!(!body.contains(scheme), "{path} contains {scheme}");
            }
        }
        assert!(asset("/").unwrap().1.contains("/app.js"));
        assert_eq!(asset("/nothing"), None);
    }
}
