//! `writ demo --once`: the newcomer's tour runs end to end and every scripted
//! request gets the decision SPEC gives it (SPEC: writ demo).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::process::Command;

#[test]
fn demo_tour_shows_each_decision_and_keeps_denials_from_the_backend() {
    let out = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Piped output is plain: no colour escapes.
    assert!(!text.contains('\u{1b}'), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    let expected: [(&str, &str); 10] = [
        ("200 allow", "subject=alice"),
        ("401 deny", "reason=no_token action=read-job"),
        ("403 deny", "reason=insufficient_scope action=run-job"),
        ("200 allow", "actor=agent:ci-7"),
        ("401 deny", "reason=delegation_expired action=run-job"),
        ("403 deny", "reason=claim_mismatch action=run-job"),
        ("401 deny", "reason=no_token action=run-job"),
        ("400 deny", "reason=bad_request"),
        (
            "200 allow",
            "agent-refund as subject=alice, actor=agent:shopper",
        ),
        (
            "403 deny",
            "reason=authorization_details_mismatch action=agent-refund",
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, (verdict, detail)) in lines.iter().zip(expected) {
        assert!(
            line.contains(verdict) && line.contains(detail),
            "expected {verdict} / {detail} in:\n{line}"
        );
        if verdict.contains("deny") {
            assert!(line.contains("backend saw nothing"), "{line}");
        }
    }
}
