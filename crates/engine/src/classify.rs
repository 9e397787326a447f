//! Stage 2: classify the normalized method, host and path into an action
//! (SPEC: Templates). The router is a trie per virtual host, so the cost does
//! not grow with the number of actions.

pub mod body;

use crate::decision::{Denial, Reason, Staged, Steps};
use crate::normalize::NormalizedTarget;
use crate::policy::Policy;
use crate::policy::router::{NoMatch, RouteMatch};

/// `Ok(Some)`: the matched action and its path parameters. `Ok(None)`: nothing
/// matched and `defaults.unmatched: allow` forwards it. Otherwise the denial:
/// `method_not_allowed` (with `Allow`) or `no_matching_action`.
pub fn classify(
    policy: &Policy,
    method: &str,
    host: Option<&str>,
    target: &NormalizedTarget,
) -> Staged<Option<RouteMatch>> {
    let mut steps = Steps::new();
    let result = match policy.router.lookup(method, host, &target.segments()) {
        Ok(m) => {
            steps.ran("classify", "action");
            Ok(Some(m))
        }
        Err(_) if policy.defaults.unmatched_allow => {
            steps.ran("classify", "action");
            Ok(None)
        }
        Err(NoMatch::MethodNotAllowed(allow)) => {
            steps.ran("classify", "method");
            let mut e = Denial::new(
                Reason::MethodNotAllowed,
                format!("method {method} is not allowed on this path"),
            );
            e.allow = allow;
            Err(e)
        }
        Err(NoMatch::NotFound) => {
            steps.ran("classify", "action");
            Err(Denial::new(
                Reason::NoMatchingAction,
                "no action matches this request",
            ))
        }
    };
    Staged { steps, result }
}
