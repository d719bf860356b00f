//! The merge rules: maps merge deeply, lists and scalars replace, and an
//! explicit `null` removes the key.

use serde_json::Value;

/// Merges `top` over `bottom`, in place.
pub fn merge(bottom: &mut Value, top: &Value) {
    match (bottom, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, tv) in t {
                if tv.is_null() {
                    b.remove(k);
                } else if let Some(bv) = b.get_mut(k) {
                    merge(bv, tv);
                } else {
                    b.insert(k.clone(), strip_nulls(tv));
                }
            }
        }
        (b, t) => *b = strip_nulls(t),
    }
}

/// [`merge`] for a layer the caller owns: its values move into `bottom`
/// instead of being copied (an app's expanded `marathon` is built, merged
/// and dropped once per environment).
pub fn merge_owned(bottom: &mut Value, top: Value) {
    match (bottom, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, tv) in t {
                if tv.is_null() {
                    b.remove(&k);
                } else if let Some(bv) = b.get_mut(&k) {
                    merge_owned(bv, tv);
                } else {
                    b.insert(k, strip_nulls_owned(tv));
                }
            }
        }
        (b, t) => *b = strip_nulls_owned(t),
    }
}

fn strip_nulls_owned(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls_owned(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls_owned).collect()),
        other => other,
    }
}

/// A `null` in a layer means "remove"; with nothing below to remove from, it
/// must not leak into the output as a literal null.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Removes the value at a JSON pointer, if present.
pub fn remove_pointer(v: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let last = super::schema::unescape(last);
    match v.pointer_mut(parent)? {
        Value::Object(m) => m.remove(&last),
        Value::Array(a) => {
            let i: usize = last.parse().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn maps_merge_lists_replace_null_removes() {
        let mut base = json!({
            "cpus": 1, "env": {"A": "1", "B": "2"},
            "constraints": [["a", "UNIQUE"]], "healthChecks": [{"path": "/"}]
        });
        let overlay = json!({
            "cpus": 2, "env": {"B": "3", "C": "4"},
            "constraints": [["b", "UNIQUE"]], "healthChecks": null, "labels": {"x": null, "y": "1"}
        });
        merge(&mut base, &overlay);
        assert_eq!(
            base,
            json!({
                "cpus": 2, "env": {"A": "1", "B": "3", "C": "4"},
                "constraints": [["b", "UNIQUE"]], "labels": {"y": "1"}
            })
        );
    }

    #[test]
    fn remove_pointer_handles_maps_and_lists() {
        let mut v = json!({"a": {"b/c": 1}, "l": [1, 2]});
        assert_eq!(remove_pointer(&mut v, "/a/b~1c"), Some(json!(1)));
        assert_eq!(remove_pointer(&mut v, "/l/0"), Some(json!(1)));
        assert_eq!(remove_pointer(&mut v, "/nope"), None);
        assert_eq!(v, json!({"a": {}, "l": [2]}));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn merging_an_owned_layer_gives_what_merging_a_borrowed_one_does(base in arb_json(), top in arb_json()) {
            let mut borrowed = base.clone();
            merge(&mut borrowed, &top);
            let mut owned = base;
            merge_owned(&mut owned, top);
            prop_assert_eq!(borrowed, owned);
        }

        #[test]
        fn merging_a_layer_twice_changes_nothing(base in arb_json(), top in arb_json()) {
            let mut once = base.clone();
            merge(&mut once, &top);
            let mut twice = once.clone();
            merge(&mut twice, &top);
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn the_top_layer_wins_for_every_non_null_key(base in arb_json(), top in arb_json()) {
            let mut merged = base.clone();
            merge(&mut merged, &top);
            if let (Value::Object(m), Value::Object(t)) = (&merged, &top) {
                for (k, v) in t {
                    match v {
                        Value::Null => prop_assert!(!m.contains_key(k)),
                        Value::Object(_) => prop_assert!(m[k].is_object()),
                        other => prop_assert_eq!(&m[k], &strip_nulls(other)),
                    }
                }
            }
        }
    }
}
