//! The revocation set (SPEC: Revocation and continuous evaluation): entries
//! that end a token's authority before its `exp`. Indexed at build time so a
//! request costs a few hash lookups whatever the set's size: one for the
//! token's `jti`, one for its `sub`, one per actor of its `act` chain, plus the
//! (few) entries that name none of these.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use serde::{Deserialize, Serialize};

use crate::claims::Claims;

/// One revocation entry: it matches a token when every field it names matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The token's `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The token's `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// An actor anywhere in the token's `act` chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The token's `iss` (narrows the other fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Tokens whose `iat` is earlier than this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<String>,
    /// The entry itself lapses at this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// An entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Nothing to match on: it would revoke every token.
    #[error(
        "an entry must name at least one of jti, sub, actor, issuer, issued_before (it would revoke every token)"
    )]
    MatchesEverything,
    /// A field that is empty.
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    /// A time that is not RFC 3339.
    #[error("`{field}` is not an RFC 3339 time: `{value}`")]
    BadTime {
        /// The field.
        field: &'static str,
        /// What it says.
        value: String,
    },
}

/// An entry checked and ready to match.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    entry: Entry,
    issued_before: Option<f64>,
    until: Option<f64>,
}

fn seconds(field: &'static str, v: &Option<String>) -> Result<Option<f64>, EntryError> {
    let Some(s) = v else { return Ok(None) };
    let bad = || EntryError::BadTime {
        field,
        value: s.clone(),
    };
    crate::clock::rfc3339_seconds(s)
        .map(Some)
        .map_err(|_| bad())
}

impl Entry {
    /// Checks the entry: something to match, no empty field, times that parse.
    pub fn compile(self) -> Result<Compiled, EntryError> {
        for (name, v) in [
            ("jti", &self.jti),
            ("sub", &self.sub),
            ("actor", &self.actor),
            ("issuer", &self.issuer),
        ] {
            if v.as_deref() == Some("") {
                return Err(EntryError::Empty(name));
            }
        }
        if self.jti.is_none()
            && self.sub.is_none()
            && self.actor.is_none()
            && self.issuer.is_none()
            && self.issued_before.is_none()
        {
            return Err(EntryError::MatchesEverything);
        }
        Ok(Compiled {
            issued_before: seconds("issued_before", &self.issued_before)?,
            until: seconds("until", &self.until)?,
            entry: self,
        })
    }

    /// The fields it names, joined by `+` (`sub+issued_before`): what the
    /// decision log records instead of the values.
    pub fn kind(&self) -> String {
        let mut k = Vec::new();
        for (name, named) in [
            ("jti", self.jti.is_some()),
            ("sub", self.sub.is_some()),
            ("actor", self.actor.is_some()),
            ("issuer", self.issuer.is_some()),
            ("issued_before", self.issued_before.is_some()),
        ] {
            if named {
                k.push(name);
            }
        }
        k.join("+")
    }
}

impl fmt::Display for Entry {
    /// The entry as one line of JSON (also its identity in a store).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Compiled {
    /// The entry as written.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Whether it has lapsed (`until` passed) at `now`.
    pub fn lapsed(&self, now: f64) -> bool {
        self.until.is_some_and(|u| now >= u)
    }

    fn matches(&self, c: &Claims, now: f64) -> bool {
        let e = &self.entry;
        let raw_str = |k: &str| c.raw.get(k).and_then(serde_json::Value::as_str);
        !self.lapsed(now)
            && e.jti.as_deref().is_none_or(|j| raw_str("jti") == Some(j))
            && e.sub.as_deref().is_none_or(|s| c.sub.as_deref() == Some(s))
            && e.issuer
                .as_deref()
                .is_none_or(|i| c.iss.as_deref() == Some(i))
            && e.actor.as_deref().is_none_or(|a| {
                c.act
                    .as_deref()
                    .is_ok_and(|chain| chain.iter().any(|x| x.sub == a))
            })
            && self.issued_before.is_none_or(|t| {
                // A token that cannot show when it was issued cannot show it
                // was issued after the cut-off.
                c.times
                    .as_ref()
                    .ok()
                    .and_then(|x| x.iat)
                    .is_none_or(|iat| iat < t)
            })
    }
}

/// A set of entries, indexed for lookup.
#[derive(Debug, Default)]
pub struct RevocationSet {
    entries: Vec<Compiled>,
    by_jti: HashMap<String, Vec<usize>>,
    by_sub: HashMap<String, Vec<usize>>,
    by_actor: HashMap<String, Vec<usize>>,
    /// Entries that name none of jti, sub, actor (issuer / issued_before only).
    broad: Vec<usize>,
}

impl RevocationSet {
    /// Builds the index; entries that have lapsed at `now` are dropped.
    pub fn new(entries: impl IntoIterator<Item = Compiled>, now: f64) -> RevocationSet {
        let mut s = RevocationSet::default();
        for c in entries {
            if c.lapsed(now) {
                continue;
            }
            let i = s.entries.len();
            let e = &c.entry;
            match (&e.jti, &e.sub, &e.actor) {
                (Some(j), _, _) => s.by_jti.entry(j.clone()).or_default().push(i),
                (None, Some(u), _) => s.by_sub.entry(u.clone()).or_default().push(i),
                (None, None, Some(a)) => s.by_actor.entry(a.clone()).or_default().push(i),
                (None, None, None) => s.broad.push(i),
            }
            s.entries.push(c);
        }
        s
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in the order given.
    pub fn entries(&self) -> impl Iterator<Item = &Compiled> {
        self.entries.iter()
    }

    /// The first entry that revokes a token with these claims at `now`.
    pub fn find(&self, c: &Claims, now: f64) -> Option<&Entry> {
        // The common case, no revocations at all, costs one comparison.
        if self.entries.is_empty() {
            return None;
        }
        let jti = if self.by_jti.is_empty() {
            None
        } else {
            c.raw.get("jti").and_then(serde_json::Value::as_str)
        };
        let actors = c.act.as_deref().unwrap_or(&[]);
        let candidates = jti
            .and_then(|j| self.by_jti.get(j))
            .into_iter()
            .chain(c.sub.as_deref().and_then(|s| self.by_sub.get(s)))
            .chain(actors.iter().filter_map(|a| self.by_actor.get(&a.sub)))
            .flatten()
            .chain(self.broad.iter());
        candidates
            .map(|&i| &self.entries[i])
            .find(|e| e.matches(c, now))
            .map(|e| &e.entry)
    }
}

/// The sets a policy checks: the file's (part of the loaded config, replaced by a
/// reload) and a shared one that `writ` fills from a store (Redis) and keeps
/// across reloads.
#[derive(Debug, Default, Clone)]
pub struct Revocations {
    /// From `revocation.file`.
    pub file: Arc<RevocationSet>,
    /// From `revocation.redis`, swapped whole by its follower.
    pub shared: Arc<ArcSwap<RevocationSet>>,
}

impl Revocations {
    /// The entry that revokes a token with these claims at `now`, if any.
    pub fn find(&self, c: &Claims, now: f64) -> Option<Entry> {
        if let Some(e) = self.file.find(c, now) {
            return Some(e.clone());
        }
        self.shared.load().find(c, now).cloned()
    }
}

#[cfg(test)]
mod tests;
