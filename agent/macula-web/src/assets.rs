//! The dashboard's files, built into the binary: one HTML page, its stylesheet and script, each
//! also gzip-compressed at build time (`build.rs`) for browsers that accept it. No external URL
//! (no CDN, no web font): the page works on a hub without internet.

/// One built-in file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// `body` compressed by `gzip -9 -n`.
    pub gzip: &'static [u8],
}

/// Every asset.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
        gzip: include_bytes!(concat!(env!("OUT_DIR"), "/index.html.gz")),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
        gzip: include_bytes!(concat!(env!("OUT_DIR"), "/app.css.gz")),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
        gzip: include_bytes!(concat!(env!("OUT_DIR"), "/app.js.gz")),
    },
];

/// The asset served at `path`.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether a request's `Accept-Encoding` (RFC 9110 §12.5.3) takes gzip: a `gzip` (or `x-gzip`)
/// coding whose weight is not 0, or else a `*` whose weight is not 0.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let mut star = false;
    for coding in accept_encoding.unwrap_or_default().split(',') {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let weighted = !parts.any(|p| {
            p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                && p[2..].parse::<f32>().is_ok_and(|q| q == 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            return weighted;
        }
        if name == "*" {
            star = weighted;
        }
    }
    star
}

/// The `Content-Security-Policy` of every page: its own origin only.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_name_no_external_url() {
        for a in ASSETS {
            for scheme in ["http://", "https://", "//cdn", "url(http"] {
                assert!(!a.body.contains(scheme), "{} contains {scheme}", a.path);
            }
        }
        assert!(asset("/").unwrap().body.contains("/app.js"));
        assert_eq!(asset("/nothing"), None);
    }

    /// The compressed bytes are the asset: `gzip -dc` gives the body back; they are smaller,
    /// less than half in all.
    #[test]
    fn gzip_bodies_decompress_to_the_assets() {
        use std::io::Write;
        let (mut plain, mut gzip) = (0, 0);
        for a in ASSETS {
            let mut child = std::process::Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run gzip");
            child.stdin.take().unwrap().write_all(a.gzip).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", a.path);
            assert_eq!(String::from_utf8(out.stdout).unwrap(), a.body, "{}", a.path);
            assert!(a.gzip.len() < a.body.len(), "{}", a.path);
            (plain, gzip) = (plain + a.body.len(), gzip + a.gzip.len());
        }
        assert!(gzip * 2 < plain, "{gzip} of {plain} bytes");
    }

    #[test]
    fn accept_encoding() {
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "br;q=1.0, gzip;q=0.8",
            "*",
            "deflate, X-GZIP",
            "gzip;q=0.001",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip; Q=0.0, br",
            "gzipx",
            "gzip;q=0, *",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }
}
