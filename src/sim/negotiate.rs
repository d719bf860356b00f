//! Content negotiation as Marathon 1.10 (Jersey) does it: each resource
//! produces a fixed set of media types, the request's `Accept` header picks
//! one, and a request that accepts none of them gets 406 before the resource
//! runs (so a refused write changes nothing).
//!
//! What each endpoint produces comes from the `responses: … body:` types of
//! the RAML in `shared/marathon-api/v1.10/api`:
//! - `/ping`: `text/plain` (`pong`) and `application/json` (`"pong"`);
//! - `/v2/tasks` and `/v2/apps/{id}/tasks`: `application/json`, and
//!   `text/plain`, which 1.10 answers with 406 unless
//!   `--deprecated_features text_plain_tasks` (changelog, "`/v2/tasks`
//!   `text/plain` output"); the simulator has no such flag;
//! - `/v2/events`: `text/event-stream` (its own 405 rule, see routes.rs);
//! - everything else: `application/json` only.
//!
//! Choices where neither the RAML nor SEMANTICS.md says:
//! - No `Accept` (or one with no parsable entry) accepts anything and gets
//!   the endpoint's first type: what Jersey does with a missing header.
//! - Among acceptable types the highest `q` wins; on a tie the endpoint's
//!   order decides (text before JSON for `/ping`, so `curl` and browsers,
//!   which send `*/*`, read `pong`, as the RAML's first example shows).
//! - The 406 body is JSON like every Marathon error body (SEMANTICS §1:
//!   `MarathonExceptionMapper` renders `WebApplicationException`s as
//!   `{"message": …}`), whatever the request accepted.
//! - A request that has both a wrong method and a wrong `Accept` gets 406,
//!   where Jersey would answer 405 first: the simulator checks the header
//!   before it knows which methods a path has.
//!
//! Request bodies: the apps, groups and tasks resources are
//! `@Consumes(APPLICATION_JSON)`, so Jersey answers a POST, PUT or PATCH
//! whose `Content-Type` is something else with 415 before the resource runs
//! (nothing is written), `{"message":"HTTP 415 Unsupported Media Type"}` as
//! the mapper renders it. Neither the RAML nor SEMANTICS.md spells this out;
//! the choices ([`consumes_json`], [`is_json`]):
//! - 415 comes before 406 (Jersey matches `@Consumes` before `@Produces`);
//! - no `Content-Type` at all is let through: Jersey matches it to any
//!   `@Consumes`, and clients like `curl -X POST …/restart` send none;
//! - only `application/json` (any parameters, any case) counts: `text/json`
//!   or `application/merge-patch+json` do not match Jersey's type either;
//! - a method the path doesn't have gets 415 rather than 405 when its type is
//!   wrong too (the check runs before routing, like the `Accept` one).

/// The media types a request may be answered with.
pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain";

/// One entry of an `Accept` header: `type/subtype;q=0.5`.
struct Range<'a> {
    ty: &'a str,
    sub: &'a str,
    q: f32,
}

fn ranges(accept: &str) -> Vec<Range<'_>> {
    accept
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let (ty, sub) = parts.next()?.trim().split_once('/')?;
            let (ty, sub) = (ty.trim(), sub.trim());
            if ty.is_empty() || sub.is_empty() {
                return None;
            }
            let mut q = 1.0;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    // An unreadable weight counts as 1, as if it were absent.
                    q = v.trim().parse::<f32>().unwrap_or(1.0).clamp(0.0, 1.0);
                }
            }
            Some(Range { ty, sub, q })
        })
        .collect()
}

/// The weight a request gives `media` (`type/subtype`): that of the most
/// specific range that matches it, `None` if none does.
fn weight(ranges: &[Range<'_>], media: &str) -> Option<f32> {
    let (ty, sub) = media.split_once('/')?;
    ranges
        .iter()
        .filter_map(|r| {
            let specificity = match (r.ty, r.sub) {
                ("*", "*") => 0,
                (t, "*") if t.eq_ignore_ascii_case(ty) => 1,
                (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub) => 2,
                _ => return None,
            };
            Some((specificity, r.q))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, q)| q)
}

/// Which of `offered` (in the endpoint's order of preference) to answer
/// with, or `None` for 406.
pub fn choose(accept: &str, offered: &[&'static str]) -> Option<&'static str> {
    let ranges = ranges(accept);
    if ranges.is_empty() {
        return offered.first().copied();
    }
    let mut best: Option<(&'static str, f32)> = None;
    for &media in offered {
        match weight(&ranges, media) {
            Some(q) if q > 0.0 && best.is_none_or(|(_, b)| q > b) => best = Some((media, q)),
            _ => {}
        }
    }
    best.map(|(media, _)| media)
}

/// Whether `method` on the endpoint at `segs` reads a JSON body (and so
/// answers 415 to another `Content-Type`).
pub fn consumes_json(segs: &[&str], method: &axum::http::Method) -> bool {
    use axum::http::Method;
    let writes = *method == Method::POST || *method == Method::PUT || *method == Method::PATCH;
    writes
        && matches!(
            segs,
            ["v2", "apps" | "groups", ..] | ["v2", "tasks", "delete"]
        )
}

/// Whether a request's `Content-Type` (absent: `None`) is one a JSON
/// endpoint takes.
pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case(JSON)
}

/// What the endpoint at `segs` produces, in its order of preference; `None`
/// for the paths that negotiate on their own (`/v2/events`, `/_sim`) or
/// don't exist.
pub fn produces(segs: &[&str]) -> Option<&'static [&'static str]> {
    match segs {
        ["ping"] => Some(&[TEXT, JSON]),
        ["v2", "events", ..] | ["_sim", ..] => None,
        ["v2", "tasks"] => Some(&[JSON, TEXT]),
        ["v2", "apps", _, .., "tasks"] => Some(&[JSON, TEXT]),
        ["metrics"]
        | [
            "v2",
            "apps" | "deployments" | "tasks" | "groups" | "info" | "leader" | "queue" | "pods"
            | "metrics" | "plugins",
            ..,
        ] => Some(&[JSON]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_answer() {
        let ping = &[TEXT, JSON];
        for (accept, want) in [
            ("", Some(TEXT)),
            ("*/*", Some(TEXT)),
            ("application/json", Some(JSON)),
            ("Application/JSON; charset=utf-8", Some(JSON)),
            ("text/plain", Some(TEXT)),
            ("text/*", Some(TEXT)),
            ("application/*", Some(JSON)),
            ("text/plain;q=0.2, application/json", Some(JSON)),
            ("text/html,application/xhtml+xml,*/*;q=0.8", Some(TEXT)),
            ("text/html", None),
            ("*/*;q=0", None),
            ("text/plain;q=0, */*", Some(JSON)),
            ("garbage", Some(TEXT)),
        ] {
            assert_eq!(choose(accept, ping), want, "Accept: {accept}");
        }
        assert_eq!(choose("text/plain", &[JSON]), None);
        assert_eq!(choose("*/*", &[JSON]), Some(JSON));
    }

    #[test]
    fn json_endpoints_take_only_json_bodies() {
        use axum::http::Method;
        for ct in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
        ] {
            assert!(is_json(ct), "{ct:?}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/merge-patch+json",
            "",
        ] {
            assert!(!is_json(Some(ct)), "{ct}");
        }
        assert!(consumes_json(&["v2", "apps"], &Method::POST));
        assert!(consumes_json(
            &["v2", "apps", "a", "restart"],
            &Method::POST
        ));
        assert!(consumes_json(&["v2", "apps", "a"], &Method::PATCH));
        assert!(consumes_json(&["v2", "groups", "g"], &Method::PUT));
        assert!(consumes_json(&["v2", "tasks", "delete"], &Method::POST));
        assert!(!consumes_json(&["v2", "apps", "a"], &Method::GET));
        assert!(!consumes_json(&["v2", "apps", "a"], &Method::DELETE));
        assert!(!consumes_json(&["v2", "deployments", "d"], &Method::DELETE));
        assert!(!consumes_json(&["_sim", "settings"], &Method::PUT));
        assert!(!consumes_json(&["v2", "plugins", "p", "x"], &Method::POST));
    }

    #[test]
    fn endpoints_produce_what_the_raml_says() {
        assert_eq!(produces(&["ping"]), Some(&[TEXT, JSON][..]));
        assert_eq!(
            produces(&["v2", "apps", "a", "b", "tasks"]),
            Some(&[JSON, TEXT][..])
        );
        assert_eq!(produces(&["v2", "apps", "a"]), Some(&[JSON][..]));
        assert_eq!(produces(&["v2", "events"]), None);
        assert_eq!(produces(&["_sim", "log"]), None);
        assert_eq!(produces(&["nope"]), None);
    }
}
