//! Delegation (SPEC "Delegation" + settled questions): the RFC 8693 `act` chain — mode
//! forbid/allow/require, anchored actor globs on the current actor only, chain depth, delegation
//! age and expiry, `act.iss`, malformed `act` — and the identity headers the backend receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::{Config, Env, LEEWAY_SECS, act_value, now};

/// Actions covering every delegation mode. `defaults.delegation` is the SPEC default (forbid).
const ACTIONS: &str = r#"
  - name: plain
    methods: [POST]
    path: /plain
    require: { scopes: [jobs:execute] }
  - name: forbidden
    methods: [POST]
    path: /forbidden
    require: { scopes: [jobs:execute] }
    delegation: { mode: forbid }
  - name: deploy
    methods: [POST]
    path: /tenants/{tenant}/deploy
    execution: true
    require:
      scopes: [jobs:execute]
      claims: { tenant: "{tenant}" }
    delegation:
      mode: allow
      actors: ["agent:ci-*", "svc:copilot"]
      max_depth: 2
      max_age: 5m
  - name: any-actor
    methods: [POST]
    path: /any-actor
    require: { scopes: [jobs:execute] }
    delegation: { mode: allow }
  - name: shallow
    methods: [POST]
    path: /shallow
    require: { scopes: [jobs:execute] }
    delegation: { mode: allow, max_depth: 1 }
  - name: agents-only
    methods: [POST]
    path: /agents-only
    require: { scopes: [jobs:execute] }
    delegation: { mode: require, actors: ["agent:*"] }
"#;

const DEPLOY: &str = "/tenants/acme/deploy";

fn env() -> Env {
    Env::start(ACTIONS)
}

fn base(env: &Env) -> support::TokenBuilder<'_> {
    env.keys
        .token()
        .scope("jobs:execute")
        .claim("tenant", json!("acme"))
}

fn post(env: &Env, path: &str, token: &str) -> support::RawResponse {
    env.send_with_token("POST", path, Some(token), &[])
}

// === mode ===

#[test]
fn forbid_mode_refuses_delegated_token() {
    let env = env();
    let token = base(&env).act("agent:ci-1").sign();
    post(&env, "/forbidden", &token).assert_problem_action(
        403,
        "delegation_forbidden",
        Some("forbidden"),
    );
    env.backend.assert_untouched();
}

#[test]
fn forbid_mode_lets_undelegated_token_through() {
    let env = env();
    let resp = post(&env, "/forbidden", &base(&env).sign());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        env.backend.single().header("x-writ-action"),
        Some("forbidden")
    );
}

#[test]
fn action_without_delegation_block_inherits_default_forbid() {
    let env = env();
    let token = base(&env).act("agent:ci-1").sign();
    post(&env, "/plain", &token).assert_problem(403, "delegation_forbidden");
    env.backend.assert_untouched();
}

#[test]
fn defaults_delegation_allow_applies_to_actions_that_say_nothing() {
    let cfg = Config::new(ACTIONS).set("defaults", "{ delegation: { mode: allow } }");
    let env = Env::with_config(&cfg);
    let token = base(&env).act("anyone:at-all").sign();
    let resp = post(&env, "/plain", &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header("x-writ-actor"), Some("anyone:at-all"));
    // An explicit forbid still wins over the default.
    env.backend.clear();
    post(&env, "/forbidden", &token).assert_problem(403, "delegation_forbidden");
    env.backend.assert_untouched();
}

#[test]
fn require_mode_refuses_undelegated_token() {
    let env = env();
    post(&env, "/agents-only", &base(&env).sign()).assert_problem_action(
        403,
        "delegation_required",
        Some("agents-only"),
    );
    env.backend.assert_untouched();
}

#[test]
fn require_mode_accepts_delegated_token() {
    let env = env();
    let resp = post(&env, "/agents-only", &base(&env).act("agent:x").sign());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert_eq!(seen.header_all("x-writ-actor"), vec!["agent:x"]);
}

#[test]
fn allow_mode_accepts_undelegated_token_without_actor_header() {
    let env = env();
    let resp = post(&env, DEPLOY, &base(&env).sign());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert!(seen.header_folded("x-writ-actor").is_empty(), "{seen:#?}");
}

#[test]
fn allowed_delegation_forwards_delegator_as_subject_and_agent_as_actor() {
    let env = env();
    let token = base(&env).act("agent:ci-7").sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.target, DEPLOY);
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
    assert_eq!(seen.header_all("x-writ-actor"), vec!["agent:ci-7"]);
    assert_eq!(seen.header_all("x-writ-action"), vec!["deploy"]);
}

#[test]
fn actor_header_is_the_current_actor_not_a_prior_one() {
    let env = env();
    let token = base(&env).act_chain(&["svc:copilot", "agent:ci-1"]).sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header_all("x-writ-actor"), vec!["svc:copilot"]);
    assert_eq!(seen.header_all("x-writ-subject"), vec!["alice"]);
}

#[test]
fn delegated_request_is_logged_with_actor_chain_current_first() {
    let env = env();
    let rid = support::unique("deleg");
    let token = base(&env).act_chain(&["agent:ci-2", "user:bob"]).sign();
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "POST",
        DEPLOY,
        &[("Authorization", &auth), ("x-request-id", &rid)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let line = env.writ.log_line_for(&rid);
    assert_eq!(
        line["actor_chain"],
        json!(["agent:ci-2", "user:bob"]),
        "{line}"
    );
    assert_eq!(line["subject"], json!("alice"), "{line}");
}

// === actor globs ===

#[test]
fn actor_glob_matches_prefix_pattern() {
    let env = env();
    for actor in ["agent:ci-1", "agent:ci-prod-42", "svc:copilot"] {
        let resp = post(&env, DEPLOY, &base(&env).act(actor).sign());
        assert_eq!(resp.status, 200, "actor {actor}: {}", resp.describe());
    }
    assert_eq!(env.backend.count(), 3);
}

#[test]
fn actor_glob_is_anchored_at_both_ends() {
    let env = env();
    for actor in [
        "xagent:ci-1",
        "evil/agent:ci-1",
        "agent:cd-1",
        "svc:copilot-evil",
        "svc:copilotx",
        "xsvc:copilot",
        "SVC:COPILOT",
    ] {
        let resp = post(&env, DEPLOY, &base(&env).act(actor).sign());
        assert_eq!(resp.status, 403, "actor {actor:?}: {}", resp.describe());
        resp.assert_problem_action(403, "actor_not_allowed", Some("deploy"));
    }
    // Surrounding whitespace never reaches the glob: such an actor is a malformed
    // token (SPEC round-two settlements), refused before authorization.
    for actor in [" agent:ci-1", "svc:copilot "] {
        let resp = post(&env, DEPLOY, &base(&env).act(actor).sign());
        resp.assert_problem_action(401, "malformed_token", Some("deploy"));
    }
    env.backend.assert_untouched();
}

#[test]
fn only_the_current_actor_is_matched_against_the_glob() {
    let env = env();
    // Current actor not allowed, prior actor allowed: refused.
    let token = base(&env).act_chain(&["user:mallory", "agent:ci-1"]).sign();
    post(&env, DEPLOY, &token).assert_problem(403, "actor_not_allowed");
    env.backend.assert_untouched();
    // Current actor allowed, prior actor not on the list: accepted.
    let token = base(&env).act_chain(&["agent:ci-1", "user:mallory"]).sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn absent_actor_list_allows_any_actor() {
    let env = env();
    let resp = post(&env, "/any-actor", &base(&env).act("whoever:1").sign());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        env.backend.single().header("x-writ-actor"),
        Some("whoever:1")
    );
}

#[test]
fn act_iss_different_from_token_iss_never_matches() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "agent:ci-1", "iss": "https://other-idp.test/"}))
        .sign();
    post(&env, DEPLOY, &token).assert_problem(403, "actor_not_allowed");
    env.backend.assert_untouched();
}

#[test]
fn act_iss_equal_to_token_iss_matches() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "agent:ci-1", "iss": support::ISSUER}))
        .sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

// === depth ===

#[test]
fn chain_longer_than_max_depth_is_too_deep() {
    let env = env();
    let token = base(&env).act_chain(&["agent:ci-1", "user:b"]).sign();
    post(&env, "/shallow", &token).assert_problem_action(
        403,
        "delegation_too_deep",
        Some("shallow"),
    );
    env.backend.assert_untouched();
}

#[test]
fn chain_at_max_depth_is_accepted() {
    let env = env();
    let resp = post(&env, "/shallow", &base(&env).act("agent:ci-1").sign());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let token = base(&env).act_chain(&["agent:ci-1", "agent:ci-0"]).sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(
        resp.status,
        200,
        "max_depth 2, chain 2: {}",
        resp.describe()
    );
    assert_eq!(env.backend.count(), 2);
}

#[test]
fn three_deep_chain_exceeds_max_depth_two() {
    let env = env();
    let token = base(&env)
        .act_chain(&["agent:ci-1", "agent:ci-0", "user:root"])
        .sign();
    post(&env, DEPLOY, &token).assert_problem(403, "delegation_too_deep");
    env.backend.assert_untouched();
}

// === age and expiry ===

#[test]
fn delegated_token_older_than_max_age_is_delegation_expired() {
    let env = env();
    let token = base(&env).act("agent:ci-1").iat_ago(6 * 60).sign();
    let resp = post(&env, DEPLOY, &token);
    resp.assert_invalid_token("delegation_expired");
    env.backend.assert_untouched();
}

#[test]
fn leeway_does_not_extend_max_age() {
    let env = env();
    // 5m + 2s old: within the 5 s leeway, but leeway never applies to max_age.
    let token = base(&env)
        .act("agent:ci-1")
        .iat_ago(5 * 60 + LEEWAY_SECS - 3)
        .sign();
    post(&env, DEPLOY, &token).assert_invalid_token("delegation_expired");
    env.backend.assert_untouched();
}

#[test]
fn delegated_token_younger_than_max_age_is_accepted() {
    let env = env();
    let token = base(&env).act("agent:ci-1").iat_ago(60).sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn max_age_does_not_apply_to_undelegated_tokens() {
    let env = env();
    let token = base(&env).iat_ago(3600).sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn delegated_token_without_iat_where_max_age_applies_is_malformed() {
    let env = env();
    let token = base(&env).act("agent:ci-1").without("iat").sign();
    post(&env, DEPLOY, &token).assert_invalid_token("malformed_token");
    env.backend.assert_untouched();
}

#[test]
fn past_act_exp_is_delegation_expired() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "agent:ci-1", "exp": now() - 60}))
        .sign();
    post(&env, DEPLOY, &token).assert_invalid_token("delegation_expired");
    env.backend.assert_untouched();
}

#[test]
fn past_act_exp_without_max_age_is_delegation_expired() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "anyone", "exp": now() - 60}))
        .sign();
    post(&env, "/any-actor", &token).assert_invalid_token("delegation_expired");
    env.backend.assert_untouched();
}

#[test]
fn leeway_does_not_apply_to_act_exp() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "agent:ci-1", "exp": now() - 2}))
        .sign();
    post(&env, DEPLOY, &token).assert_invalid_token("delegation_expired");
    env.backend.assert_untouched();
}

#[test]
fn future_act_exp_is_accepted() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "agent:ci-1", "exp": now() + 120}))
        .sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn act_exp_never_extends_an_expired_token() {
    let env = env();
    let token = base(&env)
        .exp_in(-60)
        .iat_ago(120)
        .act_value(json!({"sub": "agent:ci-1", "exp": now() + 3600}))
        .sign();
    let resp = post(&env, DEPLOY, &token);
    assert_eq!(resp.status, 401, "{}", resp.describe());
    let reason = resp.json()["reason"].as_str().unwrap_or("").to_string();
    // Authentication (time claims) runs before delegation checks: token_expired.
    assert_eq!(reason, "token_expired", "{}", resp.describe());
    env.backend.assert_untouched();
}

// === check order within delegation, and before scopes ===

#[test]
fn delegation_mode_is_checked_before_scopes() {
    let env = env();
    let token = env.keys.token().scope("nothing").act("agent:ci-1").sign();
    post(&env, "/forbidden", &token).assert_problem(403, "delegation_forbidden");
    env.backend.assert_untouched();
}

#[test]
fn actor_is_checked_before_depth() {
    let env = env();
    let token = base(&env).act_chain(&["user:evil", "a", "b", "c"]).sign();
    post(&env, DEPLOY, &token).assert_problem(403, "actor_not_allowed");
    env.backend.assert_untouched();
}

#[test]
fn depth_is_checked_before_age() {
    let env = env();
    let token = base(&env)
        .act_chain(&["agent:ci-1", "b", "c"])
        .iat_ago(3600)
        .sign();
    post(&env, DEPLOY, &token).assert_problem(403, "delegation_too_deep");
    env.backend.assert_untouched();
}

#[test]
fn delegation_is_checked_before_claims() {
    let env = env();
    let token = env
        .keys
        .token()
        .scope("jobs:execute")
        .claim("tenant", json!("globex"))
        .act("xagent:ci-1")
        .sign();
    post(&env, DEPLOY, &token).assert_problem(403, "actor_not_allowed");
    env.backend.assert_untouched();
}

// === malformed act ===

fn assert_malformed_act(env: &Env, path: &str, act: Value) {
    let token = base(env).act_value(act.clone()).sign();
    let resp = post(env, path, &token);
    assert_eq!(resp.status, 401, "act {act}: {}", resp.describe());
    resp.assert_invalid_token("malformed_token");
}

#[test]
fn act_as_string_is_malformed() {
    let env = env();
    assert_malformed_act(&env, DEPLOY, json!("agent:ci-1"));
    env.backend.assert_untouched();
}

#[test]
fn act_as_array_or_number_is_malformed() {
    let env = env();
    assert_malformed_act(&env, DEPLOY, json!([{"sub": "agent:ci-1"}]));
    assert_malformed_act(&env, DEPLOY, json!(7));
    assert_malformed_act(&env, DEPLOY, json!(true));
    env.backend.assert_untouched();
}

#[test]
fn act_without_sub_is_malformed() {
    let env = env();
    assert_malformed_act(&env, DEPLOY, json!({}));
    assert_malformed_act(&env, DEPLOY, json!({"client_id": "agent:ci-1"}));
    env.backend.assert_untouched();
}

#[test]
fn nested_act_without_sub_is_malformed() {
    let env = env();
    assert_malformed_act(
        &env,
        DEPLOY,
        json!({"sub": "agent:ci-1", "act": {"iss": support::ISSUER}}),
    );
    assert_malformed_act(&env, DEPLOY, json!({"sub": "agent:ci-1", "act": "user:b"}));
    env.backend.assert_untouched();
}

#[test]
fn act_nested_deeper_than_eight_is_malformed() {
    let env = env();
    let deep: Vec<String> = (0..9).map(|i| format!("agent:ci-{i}")).collect();
    let refs: Vec<&str> = deep.iter().map(String::as_str).collect();
    assert_malformed_act(&env, "/any-actor", act_value(&refs));
    env.backend.assert_untouched();
}

#[test]
fn act_nested_eight_deep_is_well_formed() {
    // Eight levels is allowed by shape; with no max_depth on the action it passes.
    let env = env();
    let chain: Vec<String> = (0..8).map(|i| format!("agent:ci-{i}")).collect();
    let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
    let token = base(&env).act_chain(&refs).sign();
    let resp = post(&env, "/any-actor", &token);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn malformed_act_is_refused_even_where_delegation_is_forbidden() {
    // Act shape is an authentication check: it precedes the delegation mode.
    let env = env();
    assert_malformed_act(&env, "/forbidden", json!("agent:ci-1"));
    env.backend.assert_untouched();
}

#[test]
fn act_sub_that_is_not_a_string_is_malformed() {
    let env = env();
    assert_malformed_act(&env, DEPLOY, json!({"sub": 42}));
    assert_malformed_act(&env, DEPLOY, json!({"sub": null}));
    env.backend.assert_untouched();
}

// === identity headers cannot be spoofed around delegation ===

#[test]
fn client_sent_actor_header_is_replaced_by_verified_actor() {
    let env = env();
    let token = base(&env).act("agent:ci-9").sign();
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "POST",
        DEPLOY,
        &[
            ("Authorization", &auth),
            ("X-Writ-Actor", "svc:copilot"),
            ("X-Writ-Subject", "root"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let seen = env.backend.single();
    assert_eq!(seen.header_folded("x-writ-actor"), vec!["agent:ci-9"]);
    assert_eq!(seen.header_folded("x-writ-subject"), vec!["alice"]);
}

#[test]
fn client_sent_actor_header_is_stripped_when_token_is_not_delegated() {
    let env = env();
    let token = base(&env).sign();
    let auth = format!("Bearer {token}");
    let resp = env.send(
        "POST",
        DEPLOY,
        &[("Authorization", &auth), ("X-Writ-Actor", "svc:copilot")],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(
        env.backend
            .single()
            .header_folded("x-writ-actor")
            .is_empty()
    );
}

#[test]
fn cached_delegated_token_expires_when_act_exp_passes() {
    let env = env();
    let token = base(&env)
        .act_value(json!({"sub": "agent:ci-1", "exp": now() + 2}))
        .sign();
    let first = post(&env, DEPLOY, &token);
    assert_eq!(first.status, 200, "{}", first.describe());
    std::thread::sleep(std::time::Duration::from_millis(3100));
    post(&env, DEPLOY, &token).assert_invalid_token("delegation_expired");
    assert_eq!(env.backend.count(), 1);
}

#[test]
fn may_act_is_not_delegation() {
    // `may_act` (RFC 8693 §4.4) says who may act, not who is acting: the token is undelegated.
    let env = env();
    let token = base(&env)
        .claim("may_act", json!({"sub": "agent:x"}))
        .sign();
    post(&env, "/agents-only", &token).assert_problem(403, "delegation_required");
    env.backend.assert_untouched();
}
