use super::*;

fn router(specs: &[(&str, &[&str], Option<&str>)]) -> Router {
    let mut r = Router::new(true);
    for (i, (path, methods, host)) in specs.iter().enumerate() {
        let t = Template::parse(path, false).unwrap();
        let m = if methods == &["*"] {
            Methods::Any
        } else {
            Methods::List(methods.iter().map(|s| s.to_string()).collect())
        };
        r.insert(i, &t, host.map(str::to_string), m).unwrap();
    }
    r
}

fn segs(p: &str) -> Vec<&str> {
    p.trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

fn find(r: &Router, m: &str, host: Option<&str>, p: &str) -> Option<usize> {
    r.lookup(m, host, &segs(p)).ok().map(|m| m.action)
}

#[test]
fn literal_beats_param_beats_rest_regardless_of_order() {
    let specs: &[(&str, &[&str], Option<&str>)] = &[
        ("/a/{*rest}", &["GET"], None),
        ("/a/{id}", &["GET"], None),
        ("/a/me", &["GET"], None),
    ];
    let r = router(specs);
    assert_eq!(find(&r, "GET", None, "/a/me"), Some(2));
    assert_eq!(find(&r, "GET", None, "/a/7"), Some(1));
    assert_eq!(find(&r, "GET", None, "/a/7/x"), Some(0));
    // rest needs at least one segment
    assert_eq!(find(&r, "GET", None, "/a"), None);
}

#[test]
fn leftmost_segment_decides() {
    let r = router(&[("/{x}/b", &["GET"], None), ("/a/{y}", &["GET"], None)]);
    assert_eq!(find(&r, "GET", None, "/a/b"), Some(1));
}

#[test]
fn backtracks_when_literal_branch_dead_ends() {
    let r = router(&[("/a/b/c", &["GET"], None), ("/{x}/b/d", &["GET"], None)]);
    assert_eq!(find(&r, "GET", None, "/a/b/d"), Some(1));
}

#[test]
fn method_filters_candidates_and_405_lists_allow() {
    let r = router(&[
        ("/jobs/{id}", &["GET"], None),
        ("/jobs/{id}", &["DELETE"], None),
    ]);
    assert_eq!(find(&r, "DELETE", None, "/jobs/1"), Some(1));
    assert_eq!(
        r.lookup("POST", None, &segs("/jobs/1")),
        Err(NoMatch::MethodNotAllowed(vec![
            "DELETE".into(),
            "GET".into()
        ]))
    );
    assert_eq!(
        r.lookup("POST", None, &segs("/nope")),
        Err(NoMatch::NotFound)
    );
}

#[test]
fn host_specific_beats_hostless() {
    let r = router(&[
        ("/x", &["GET"], None),
        ("/x", &["GET"], Some("api.example.com")),
    ]);
    assert_eq!(find(&r, "GET", Some("api.example.com"), "/x"), Some(1));
    assert_eq!(find(&r, "GET", Some("other"), "/x"), Some(0));
    assert_eq!(find(&r, "GET", None, "/x"), Some(0));
}

#[test]
fn matching_host_decides_before_template_specificity() {
    // internal-everything must not lose GET /status on its own host to a
    // public host-less literal (round-two settlement: virtual host first).
    let r = router(&[
        ("/status", &["GET"], None),
        ("/{*rest}", &["*"], Some("internal.example.test")),
    ]);
    assert_eq!(
        find(&r, "GET", Some("internal.example.test"), "/status"),
        Some(1)
    );
    assert_eq!(find(&r, "GET", Some("other.example"), "/status"), Some(0));
    // Nothing in the host's trie takes the method: host-less actions still apply.
    let r = router(&[
        ("/status", &["GET"], None),
        ("/admin/{*rest}", &["DELETE"], Some("h")),
    ]);
    assert_eq!(find(&r, "GET", Some("h"), "/status"), Some(0));
    assert_eq!(
        r.lookup("GET", Some("h"), &segs("/admin/x")),
        Err(NoMatch::MethodNotAllowed(vec!["DELETE".into()]))
    );
}

#[test]
fn conflicts_are_detected_by_shape() {
    let mut r = Router::new(true);
    let a = Template::parse("/t/{a}", false).unwrap();
    let b = Template::parse("/t/{b}", false).unwrap();
    r.insert(0, &a, None, Methods::List(vec!["GET".into()]))
        .unwrap();
    let err = r.insert(1, &b, None, Methods::Any).unwrap_err();
    assert_eq!(err.existing, 0);
    // same shape, different host: fine
    r.insert(2, &b, Some("h".into()), Methods::Any).unwrap();
}

#[test]
fn params_are_captured() {
    let r = router(&[("/t/{tenant}/f/{*path}", &["GET"], None)]);
    let m = r.lookup("GET", None, &segs("/t/acme/f/a/b")).unwrap();
    assert_eq!(
        m.params,
        vec![
            ("tenant".into(), "acme".into()),
            ("path".into(), "a/b".into())
        ]
    );
}

#[test]
fn case_insensitive_literals() {
    let mut r = Router::new(false);
    let t = Template::parse("/Admin/{id}", false).unwrap();
    r.insert(0, &t, None, Methods::Any).unwrap();
    let m = r.lookup("GET", None, &segs("/aDMIN/Xy")).unwrap();
    assert_eq!(m.params, vec![("id".into(), "Xy".into())]);
}

#[test]
fn cost_does_not_scan_actions() {
    // 10k actions: a lookup still resolves through hash lookups per segment.
    let mut r = Router::new(true);
    for i in 0..10_000 {
        let t = Template::parse(&format!("/svc{i}/items/{{id}}"), false).unwrap();
        r.insert(i, &t, None, Methods::List(vec!["GET".into()]))
            .unwrap();
    }
    assert_eq!(find(&r, "GET", None, "/svc9999/items/1"), Some(9999));
    assert_eq!(find(&r, "GET", None, "/svc10000/items/1"), None);
}
