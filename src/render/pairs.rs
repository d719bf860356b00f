//! Rendering many (environment, app) pairs on every core.
//!
//! Apps are independent once the repo's shared parts are loaded, so they
//! render in parallel, one app (all its environments) at a time per worker:
//! its base and its config-file sources are read once and shared by its
//! environments. What must see every app in order (Marathon ids unique
//! across environments) is decided in order before, and the problems come
//! out in the same order as a render on one core would give them.

use super::app::AppContext;
use super::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A unit's index, its rendering (if it rendered) and its problems.
type Done = (usize, Option<RenderedApp>, Vec<Diagnostic>);

/// One app in one environment, to render.
struct Unit<'a> {
    env: &'a EnvName,
    app: &'a AppPath,
    /// Index of the app's base in the list of bases.
    base: usize,
    id: String,
}

/// The problems of a render, in the order the pairs name them: those found
/// before rendering, and where each unit's own go.
enum Piece {
    Found(Vec<Diagnostic>),
    Unit(usize),
}

/// Renders the given (environment, apps) pairs of a loaded repo.
pub fn render_pairs(
    repo: &Repo,
    pairs: &[(EnvName, Vec<AppPath>)],
    diags: &mut Diagnostics,
) -> Desired {
    // Each app's base, read and checked once for all its environments.
    let mut apps: Vec<&AppPath> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (_, list) in pairs {
        for app in list {
            if !repo.broken.contains_key(app) && !index.contains_key(app.as_str()) {
                index.insert(app, apps.len());
                apps.push(app);
            }
        }
    }
    let bases: Vec<(Option<Layer>, Vec<Diagnostic>)> = par_map(&apps, |app| {
        let mut d = Diagnostics::default();
        let file = format!("apps/{app}/app.yaml");
        let mut layer = read_layer(
            &repo.snapshot,
            &file,
            schema::Kind::App,
            &repo.budgets,
            &mut d,
        );
        if let Some(l) = layer.as_mut() {
            sealed::open(l, &repo.keys, repo.rules.as_deref(), &mut d);
        }
        if let Some(l) = &layer {
            check_app_envs(l, &repo.envs, &repo.apps[app.as_str()], &mut d);
        }
        (layer, d.0)
    });

    // In order: where each app renders, and the problems found on the way.
    let mut reported = vec![false; apps.len()];
    let mut units: Vec<Unit<'_>> = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut ids: BTreeMap<String, (&EnvName, &AppPath)> = BTreeMap::new();
    for (env, list) in pairs {
        let settings = &repo.envs[env];
        for app in list {
            if let Some(problems) = repo.broken.get(app) {
                pieces.push(Piece::Found(problems.clone()));
                continue;
            }
            let b = index[app.as_str()];
            if !std::mem::replace(&mut reported[b], true) {
                pieces.push(Piece::Found(bases[b].1.clone()));
            }
            let Some(base) = bases[b].0.as_ref() else {
                continue;
            };
            if !runs_in(base, env) {
                continue;
            }
            let id = settings.app_id(app);
            if let Some((other_env, other_app)) = ids.insert(id.clone(), (env, app)) {
                pieces.push(Piece::Found(vec![
                    Diagnostic::file(&base.file, format!("app `{app}` in `{env}` has the Marathon id `{id}`, as app `{other_app}` in `{other_env}` does"))
                        .with_hint("Marathon ids must be unique: change one environment's group or rename one app"),
                ]));
                continue;
            }
            pieces.push(Piece::Unit(units.len()));
            units.push(Unit {
                env,
                app,
                base: b,
                id,
            });
        }
    }

    // The units, grouped by app so that an app's sources are read once.
    let mut by_app: Vec<Vec<usize>> = vec![Vec::new(); apps.len()];
    for (i, u) in units.iter().enumerate() {
        by_app[u.base].push(i);
    }
    by_app.retain(|u| !u.is_empty());
    let done: Vec<Vec<Done>> = par_map(&by_app, |list| {
        let sources = RefCell::new(BTreeMap::new());
        let compiled = repo.templates.cache();
        list.iter()
            .map(|&i| {
                let u = &units[i];
                let base = bases[u.base].0.as_ref().expect("units have a base");
                let mut d = Diagnostics::default();
                let r = render_unit(repo, u, base, &sources, &compiled, &mut d);
                (i, r, d.0)
            })
            .collect()
    });
    let mut results: Vec<(Option<RenderedApp>, Vec<Diagnostic>)> =
        (0..units.len()).map(|_| (None, Vec::new())).collect();
    for (i, r, d) in done.into_iter().flatten() {
        results[i] = (r, d);
    }

    for piece in pieces {
        match piece {
            Piece::Found(list) => list.into_iter().for_each(|d| diags.push(d)),
            Piece::Unit(i) => std::mem::take(&mut results[i].1)
                .into_iter()
                .for_each(|d| diags.push(d)),
        }
    }
    let mut envs: BTreeMap<EnvName, DesiredEnv> = pairs
        .iter()
        .map(|(env, _)| {
            let d = DesiredEnv {
                settings: repo.envs[env].clone(),
                apps: BTreeMap::new(),
            };
            (env.clone(), d)
        })
        .collect();
    for (u, (r, _)) in units.iter().zip(results) {
        if let Some(r) = r {
            envs.get_mut(u.env)
                .expect("every pair's environment")
                .apps
                .insert(u.app.clone(), Arc::new(r));
        }
    }
    Desired {
        revision: repo.snapshot.revision.clone(),
        envs,
    }
}

/// One app in one environment: its overlay read, its layers merged and
/// rendered.
fn render_unit(
    repo: &Repo,
    u: &Unit<'_>,
    base: &Layer,
    sources: &RefCell<BTreeMap<String, Vec<u8>>>,
    compiled: &template::TemplateCache,
    diags: &mut Diagnostics,
) -> Option<RenderedApp> {
    let (env, app) = (u.env, u.app);
    let overlay = if repo.apps[app.as_str()].contains(env) {
        let file = format!("apps/{app}/env/{env}.yaml");
        let mut l = read_layer(
            &repo.snapshot,
            &file,
            schema::Kind::App,
            &repo.budgets,
            diags,
        )?;
        sealed::open(&mut l, &repo.keys, repo.rules.as_deref(), diags);
        if l.get("/environments").is_some() {
            diags.push(
                l.diag(
                    "/environments",
                    Target::Key,
                    "`environments` belongs in the app's base `app.yaml`, not in an overlay",
                )
                .with_hint("move it to app.yaml"),
            );
        }
        Some(l)
    } else {
        None
    };
    let layers: Vec<&Layer> = repo
        .env_layers
        .get(env)
        .into_iter()
        .chain([base])
        .chain(overlay.as_ref())
        .collect();
    if repo
        .deadline
        .is_some_and(|d| std::time::Instant::now() >= d)
    {
        let secs = repo.budgets.deadline.unwrap_or_default().as_secs();
        diags.push(
            Diagnostic::file(&base.file, format!("app `{app}` in `{env}` was not rendered: the whole render passed its deadline of {secs} s"))
                .with_hint("simplify the templates of the apps rendered before it"),
        );
        return None;
    }
    let ctx = AppContext {
        repo,
        settings: &repo.envs[env],
        app,
        id: &u.id,
        layers: &layers,
        spent: std::cell::Cell::new(0),
        fuel: std::cell::Cell::new(0),
        sources,
        compiled,
    };
    ctx.render(diags)
}

/// `f` over `items` on every core (the calling thread is one of them),
/// results in the items' order. Workers take the next item as they finish
/// one, so a slow app doesn't hold a share of the others back.
pub(super) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            mine.push((i, f(item)));
        }
        mine
    };
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut parts = vec![work()];
        for h in others {
            parts.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        parts
    });
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    for (i, r) in parts.into_iter().flatten() {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("every item is taken once"))
        .collect()
}
