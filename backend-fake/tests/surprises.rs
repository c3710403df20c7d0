//! The convergence guarantees, on a host that changes things behind env-qemu's back: a
//! lease ends, a DHCP client deconfigures the NIC or puts its address back, a route
//! expires or comes back ([`Surprising`]). Whatever happens, every command ends, and what
//! it says is what a dump shows:
//! - a command that succeeds reached its goal (a fresh dump matches it);
//! - one that does not reports exactly what still differs;
//! - "nothing was changed" is said only when a full dump equals the one before it;
//! - `stop` never goes back to the bridged state: every address of the host that still
//!   exists ends on the NIC.

mod common;

use common::n;
use common::script::{cmd, Cmd, Expect, Model, Target};
use common::world::{build, world_spec, WorldSpec};
use common::*;
use env_qemu_backend_fake::surprise::{Surprise, Surprising};
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::CommandError;
use env_qemu_core::converge::Progress;
use env_qemu_core::exec::Event;
use env_qemu_core::model::{AddrScope, NetState};
use env_qemu_core::observe::observe_scope;
use env_qemu_core::store::{MemoryStore, StateStore};
use proptest::prelude::*;
use proptest::sample::Index;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A surprise, chosen among the uplink's initial addresses and routes.
#[derive(Debug, Clone, Copy)]
enum Pick {
    AddressGone(Index),
    AddressBack(Index),
    RouteGone(Index),
    RouteBack(Index),
}

fn one_pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        any::<Index>().prop_map(Pick::AddressGone),
        any::<Index>().prop_map(Pick::AddressBack),
        any::<Index>().prop_map(Pick::RouteGone),
        any::<Index>().prop_map(Pick::RouteBack),
    ]
}

fn pick() -> impl Strategy<Value = Option<(usize, Pick)>> {
    proptest::option::of((0usize..16, one_pick()))
}

/// `pick` on the uplink eth0 of `initial`; none when it has nothing of that kind.
fn resolve(initial: &NetState, pick: Pick) -> Option<Surprise> {
    let nic = n("eth0");
    let addrs: Vec<_> = initial
        .addresses_of(&nic)
        .filter(|a| a.scope != AddrScope::Link)
        .collect();
    let routes: Vec<_> = initial.routes_via(&nic).collect();
    let one = |len: usize, i: Index| (len > 0).then(|| i.index(len));
    Some(match pick {
        Pick::AddressGone(i) => Surprise::AddressGone(addrs[one(addrs.len(), i)?].ip),
        Pick::AddressBack(i) => Surprise::AddressBack(addrs[one(addrs.len(), i)?].clone()),
        Pick::RouteGone(i) => Surprise::RouteGone {
            route: routes[one(routes.len(), i)?].clone(),
            also: Some(n("lepont")),
        },
        Pick::RouteBack(i) => Surprise::RouteBack(routes[one(routes.len(), i)?].clone()),
    })
}

/// A command and the surprise it meets, if any (after how many of its changes).
type Step = (Cmd, Option<(usize, Pick)>);

fn sequence() -> impl Strategy<Value = (WorldSpec, Vec<Step>)> {
    (
        world_spec(),
        proptest::collection::vec((cmd().prop_map(on_eth0), pick()), 1..10),
    )
}

/// Surprises hit any object of the initial world; one on a NIC the command does not
/// bridge is no command's to repair, and a later `start` on that NIC finds it. The
/// default uplink is often another NIC than eth0: here it is eth0, as before the choice
/// existed (`restore.rs` covers the choice).
fn on_eth0(c: Cmd) -> Cmd {
    match c {
        Cmd::Start {
            uplink: Target::Default,
            shm_mb,
        } => Cmd::Start {
            uplink: Target::Nic(0),
            shm_mb,
        },
        Cmd::Join {
            holder,
            uplink: Target::Default,
        } => Cmd::Join {
            holder,
            uplink: Target::Nic(0),
        },
        c => c,
    }
}

/// What a fresh dump says still differs from `p`'s goal.
async fn truth(sim: &SimKernel, p: &Progress) -> Vec<String> {
    let live = observe_scope(sim, &p.goal.scope())
        .await
        .expect("the simulated kernel answers");
    let mut d: Vec<String> = p
        .goal
        .expected()
        .differences(&live)
        .iter()
        .map(|d| d.to_string())
        .collect();
    d.sort();
    d
}

/// `s` restricted to `devs`.
fn only(
    s: &env_qemu_core::model::Snapshot,
    devs: &[env_qemu_core::model::IfName],
) -> env_qemu_core::model::Snapshot {
    let mut s = s.clone();
    s.net.links.retain(|l| devs.contains(&l.name));
    s.net.addresses.retain(|a| devs.contains(&a.dev));
    s.net
        .routes
        .retain(|r| r.dev.as_ref().is_some_and(|d| devs.contains(d)));
    s.sysctls.retain(|v| devs.contains(&v.key.dev));
    s.neighbours.retain(|n| devs.contains(&n.dev));
    s
}

/// What differs between two full states, item by item.
fn changes(a: &env_qemu_core::model::Snapshot, b: &env_qemu_core::model::Snapshot) -> String {
    let items = |s: &env_qemu_core::model::Snapshot| -> Vec<String> {
        let mut v: Vec<String> = s.net.links.iter().map(|x| format!("{x:?}")).collect();
        v.extend(s.net.addresses.iter().map(|x| format!("{x:?}")));
        v.extend(s.net.routes.iter().map(|x| format!("{x:?}")));
        v.extend(s.sysctls.iter().map(|x| format!("{x:?}")));
        v.extend(s.neighbours.iter().map(|x| format!("{x:?}")));
        v.push(format!("{:?}", s.tmpfs));
        v
    };
    let (x, y) = (items(a), items(b));
    let mut out = String::new();
    for i in x.iter().filter(|i| !y.contains(i)) {
        out.push_str(&format!("- {i}\n"));
    }
    for i in y.iter().filter(|i| !x.contains(i)) {
        out.push_str(&format!("+ {i}\n"));
    }
    out
}

fn reported(p: &Progress) -> Vec<String> {
    let mut d: Vec<String> = p.residual.iter().map(|d| d.to_string()).collect();
    d.sort();
    d
}

fn noop() -> impl FnMut(Event<'_>) + Send {
    |_| {}
}

/// Each command's outcome against a fresh dump, with the surprise it met.
async fn check(sim: &SimKernel, kernel: &Surprising, store: &MemoryStore, c: Cmd) {
    let before = full_state(sim).await;
    let saved = store.load().unwrap();
    let Some(got) = run_on(kernel, sim, store, c, &mut noop()).await else {
        return;
    };
    let played = kernel.played();
    match &got {
        Ok(None) => {}
        Ok(Some(report)) => {
            let t = truth(sim, &report.progress).await;
            assert!(
                t.is_empty(),
                "{c:?} said its goal was reached, a dump differs (surprises {played:?}): {t:#?}"
            );
        }
        Err(CommandError::Unreached(u)) => {
            let last = u.back.as_ref().unwrap_or(&u.forward);
            assert_eq!(
                reported(last),
                truth(sim, last).await,
                "{c:?} (surprises {played:?}): {u}"
            );
            if u.nothing_changed() {
                // What env-qemu claims is about the uplink, the bridge and its taps; the
                // host's surprises elsewhere are the host's.
                let devs = last.goal.scope().filter.links;
                let (before, after) = (only(&before, &devs), only(&full_state(sim).await, &devs));
                assert!(
                    after == before,
                    "{c:?} said nothing was changed (surprises {played:?}): {u}\n{}",
                    changes(&before, &after)
                );
            } else {
                assert!(!u.to_string().contains("nothing was changed"), "{u}");
            }
        }
        Err(_) => {}
    }
    if let (Cmd::Stop { .. }, Some(saved)) = (c, saved) {
        if matches!(got, Ok(_) | Err(CommandError::Unreached(_))) {
            let (nic, br) = (&saved.request.uplink, &saved.request.bridge);
            let net = sim.net();
            let host = before
                .net
                .addresses_of(nic)
                .chain(before.net.addresses_of(br));
            for a in host.filter(|a| a.scope != AddrScope::Link) {
                let anywhere = net.addresses.iter().any(|b| b.ip == a.ip);
                let on_nic = net.addresses_of(nic).any(|b| b.ip == a.ip);
                assert!(
                    !anywhere || on_nic,
                    "stop left {a} off {nic} (surprises {played:?}): {got:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every command of a sequence, each meeting one surprise at a random point, tells the
    /// truth about where it ended; a final `stop --force` on a quiet host then reaches the
    /// saved state or says exactly what differs.
    #[test]
    fn commands_tell_the_truth_on_a_surprising_host((w, cmds) in sequence()) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = sim.net();
            let kernel = Surprising::new(sim.clone());
            let store = MemoryStore::new();
            for (c, surprise) in &cmds {
                if let Some(s) = surprise.and_then(|(after, p)| resolve(&initial, p).map(|s| (after, s))) {
                    kernel.schedule(s.0, s.1);
                }
                check(&sim, &kernel, &store, *c).await;
            }
            let quiet = Surprising::new(sim.clone());
            if store.load().unwrap().is_some() {
                check(&sim, &quiet, &store, Cmd::Stop { force: true }).await;
            }
        });
    }
}

/// Whether env-qemu can undo `s` itself: anything but the loss of an address with a
/// finite lifetime (a lease that ended is not renewed by copying it back) and a change
/// to an IPv4 address that shares its subnet with another (the primary role moves to the
/// other one: reported, not undone).
fn repairable(s: &Surprise, initial: &NetState) -> bool {
    let shares_subnet = |ip: &std::net::IpAddr| {
        initial.addresses.iter().filter(|a| a.ip == *ip).any(|a| {
            a.ip.is_ipv4()
                && initial.addresses.iter().any(|b| {
                    b.ip != a.ip
                        && b.dev == a.dev
                        && b.prefix_len == a.prefix_len
                        && a.prefix() == b.prefix()
                })
        })
    };
    match s {
        Surprise::AddressGone(ip) => {
            let permanent = initial
                .addresses
                .iter()
                .any(|a| a.ip == *ip && a.valid_lft.is_none());
            permanent && !shares_subnet(ip)
        }
        Surprise::AddressBack(a) => !shares_subnet(&a.ip),
        _ => true,
    }
}

proptest! {
    #![proptest_config(config())]

    /// A surprise env-qemu can set right (a route deleted or re-added behind its back, an
    /// address put back on the NIC, a permanent address deleted), met by `start` or by
    /// `stop`, does not keep it from its goal: a new plan from a fresh dump gets there.
    #[test]
    fn repairable_surprises_are_repaired(
        w in world_spec(),
        taps in proptest::collection::vec(0usize..3, 0..3),
        in_stop in any::<bool>(),
        (after, p) in (0usize..16, proptest::option::of(one_pick())),
    ) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = sim.net();
            let kernel = Surprising::new(sim.clone());
            let store = MemoryStore::new();
            let surprise = p.and_then(|p| resolve(&initial, p)).filter(|s| repairable(s, &initial));
            let mut cmds = vec![Cmd::Start { uplink: common::script::Target::Nic(0), shm_mb: None }];
            cmds.extend(taps.iter().map(|t| Cmd::Add(common::script::Target::Tap(*t))));
            cmds.push(Cmd::Stop { force: true });
            let mut model = Model::new(&initial);
            for c in &cmds {
                let expect = model.expect(&w, *c);
                let here = matches!(c, Cmd::Stop { .. }) == in_stop && !matches!(c, Cmd::Add(_));
                if let (true, Some(s)) = (here, surprise.clone()) {
                    kernel.schedule(after, s);
                }
                let got = run_on(&kernel, &sim, &store, *c, &mut noop()).await;
                kernel.cancel_pending();
                let Some(got) = got else { continue };
                if expect == Some(Expect::Ok) {
                    assert!(got.is_ok(), "{c:?} (surprises {:?}): {}", kernel.played(), got.unwrap_err());
                    model.apply(*c);
                }
            }
        });
    }
}
