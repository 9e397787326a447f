use super::*;
use crate::escape::is_unreserved;
use crate::vocab::SegmentPolicy;
use proptest::prelude::*;

fn policy() -> PathPolicy {
    PathPolicy {
        segment: SegmentPolicy {
            encoded_slash: Choice::Reject,
            semicolon: Choice::Reject,
        },
        strict_trailing_slash: false,
    }
}

fn norm(s: &str) -> Result<String, u16> {
    normalize_target(s, &policy())
        .map(|t| t.path_and_query())
        .map_err(|d| d.status)
}

#[test]
fn spec_examples() {
    let ok: &[(&str, &str)] = &[
        ("/%61dmin", "/admin"),
        ("/a/%7e/b", "/a/~/b"),
        ("/a/%3a", "/a/%3A"),
        ("/a/%25", "/a/%25"),
        ("/a/%252e%252e/b", "/a/%252e%252e/b"),
        ("//admin//x", "/admin/x"),
        ("/a/./b/../c", "/a/c"),
        ("/a/b/", "/a/b"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/", "/"),
        ("/a?x=/../b#", "/a?x=/../b#"),
        ("/q?%00", "/q?%00"),
        ("/\u{e9}", "/%C3%A9"),
    ];
    for (i, o) in ok {
        if i.contains('#') {
            continue;
        }
        assert_eq!(norm(i).as_deref(), Ok(*o), "{i}");
    }
    for bad in [
        "*",
        "http://x/a",
        "a",
        "/..",
        "/a/../..",
        "/%2e%2e/admin",
        "/a%2Fb",
        "/a%2fb",
        "/a\\b",
        "/a%5Cb",
        "/a%5cb",
        "/a;x",
        "/a%3Bx",
        "/a%00",
        "/a%0a",
        "/a%zz",
        "/a%",
        "/a%u002e",
        "/a#x",
        "/a?b#c",
    ] {
        assert_eq!(norm(bad), Err(400), "{bad}");
    }
    assert_eq!(norm(&format!("/{}", "a".repeat(9000))), Err(414));
}

#[test]
fn keep_policies_and_strict_slash() {
    let p = PathPolicy {
        segment: SegmentPolicy::permissive(),
        strict_trailing_slash: true,
    };
    let n = |s: &str| normalize_target(s, &p).map(|t| t.path);
    assert_eq!(n("/a%2fb").as_deref(), Ok("/a%2Fb"));
    assert_eq!(n("/a;x=1/").as_deref(), Ok("/a;x=1/"));
    assert_eq!(n("/a/b/..").as_deref(), Ok("/a/"));
    assert!(n("/x/..;/admin").is_err(), "Shiro ..; must never pass");
    assert!(n("/x/%2e%2e%3b/admin").is_err());
}

#[test]
fn method_override_in_query() {
    assert!(query_has_method_override("a=1&_method=DELETE"));
    assert!(query_has_method_override("%5Fmethod=DELETE"));
    assert!(!query_has_method_override("my_method=x"));
    // look-alikes that PHP, Symfony and `;`-splitting parsers read as `_method`
    for q in [
        ".method=DELETE",
        "+_method=DELETE",
        "%20_method=X",
        "a=1;_method=X",
        "_METHOD=X",
        "[method=X",
        // suffixes a framework strips: PHP cuts at NUL, others trim
        "_method%00=DELETE",
        "_method%00junk=DELETE",
        "_method%20=DELETE",
        "_method%09=DELETE",
        "_method%0A=DELETE",
        "_method[]=DELETE",
        "_method%5B0%5D=DELETE",
    ] {
        assert!(query_has_method_override(q), "{q}");
    }
    for q in ["_methods=1", "_method_name=x", "x_method=1", "method=PUT"] {
        assert!(!query_has_method_override(q), "{q}");
    }
    assert_eq!(
        strip_method_override("a=1&_method=X").as_deref(),
        Some("a=1")
    );
    assert_eq!(strip_method_override("_method=X"), None);
    assert_eq!(strip_method_override("").as_deref(), Some(""));
    assert_eq!(strip_method_override("a&&b;").as_deref(), Some("a&&b;"));
    assert_eq!(
        strip_method_override("a=1;b=2&c").as_deref(),
        Some("a=1;b=2&c")
    );
    assert_eq!(
        strip_method_override("_method=X;a=1&b").as_deref(),
        Some("a=1&b")
    );
    assert_eq!(
        strip_method_override("a;.method=X&b").as_deref(),
        Some("a&b")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalized_paths_are_canonical(s in "(/([a-zA-Z0-9._~;-]|%[0-9a-fA-F]{2}|\\.\\.|\\.|/){0,8}){1,6}(\\?[a-z=&]{0,5})?") {
        if let Ok(t) = normalize_target(&s, &policy()) {
            prop_assert!(t.path.starts_with('/'));
            prop_assert!(!t.path.contains("//"), "{}", t.path);
            for seg in t.segments() {
                prop_assert!(seg != "." && seg != "..", "{}", t.path);
            }
            prop_assert!(!t.path.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\'));
            // idempotent: normalizing the output changes nothing
            let again = normalize_target(&t.path_and_query(), &policy()).unwrap();
            prop_assert_eq!(&again, &t);
            // every escape left is uppercase and not an unreserved character
            let b = t.path.as_bytes();
            for (i, c) in b.iter().enumerate() {
                if *c == b'%' {
                    let h = &t.path[i + 1..i + 3];
                    prop_assert_eq!(h, h.to_uppercase());
                    let v = u8::from_str_radix(h, 16).unwrap();
                    prop_assert!(!is_unreserved(v));
                }
            }
        }
    }

    #[test]
    fn never_panics(s in "\\PC{0,64}") {
        let _ = normalize_target(&s, &policy());
        let _ = normalize_target(&format!("/{s}"), &policy());
    }
}

#[test]
fn method_override_in_form_body() {
    assert!(form_has_method_override(b"name=a&_method=DELETE"));
    assert!(form_has_method_override(b"_method%00=PUT"));
    assert!(!form_has_method_override(b"name=a&method=DELETE"));
    assert_eq!(
        strip_form_method_override(b"a=1&_method=DELETE&b=2").as_deref(),
        Some(&b"a=1&b=2"[..])
    );
    assert_eq!(strip_form_method_override(b"\xff&_method=X"), None);
}
