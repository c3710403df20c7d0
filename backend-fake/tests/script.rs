//! `testkit::script`: `ip` command lines read as the operations `ip` would send, checked
//! against the seed recipe, the shell baseline `ci/baseline/bridge.sh`, and every
//! operation env-qemu's own start and stop plans print.

mod common;

use env_qemu_backend_fake::testkit::script::Script;
use env_qemu_backend_fake::testkit::world::{self, world_spec, WorldSpec};
use env_qemu_core::model::{AddrFlag, Address, Family, RouteType};
use env_qemu_core::plan::plan_start;
use env_qemu_core::store::MemoryStore;
use env_qemu_core::{LinkChange, LinkSpec, Op};
use proptest::prelude::*;

use common::fixtures::*;
use common::script::{Cmd, Target};
use common::{full_state, run_on, runtime};

fn ops(text: &str) -> Vec<Op> {
    match Script::parse(text) {
        Ok(s) => s.ops().cloned().collect(),
        Err(e) => panic!("{text:?}: {e}"),
    }
}

/// The error of a script: its line, its token, and the message.
fn error(text: &str) -> (usize, String, String) {
    let e = Script::parse(text).expect_err(text);
    (e.line, e.token, e.message)
}

#[test]
fn the_seed_recipe_reads_as_the_operations_ip_sends() {
    let got = ops("ip link add lepont type bridge
         ip link set eth0 master lepont
         ip addr add 192.0.2.10/24 dev lepont
         ip addr del 192.0.2.10/24 dev eth0
         ip route add default via 192.0.2.1");
    let mut default = route("0.0.0.0/0", Some("192.0.2.1"), None);
    default.scope = env_qemu_core::model::RouteScope::Universe;
    assert_eq!(
        got,
        [
            Op::LinkAdd {
                spec: LinkSpec::Bridge {
                    name: n("lepont"),
                    mac: None,
                    mtu: None,
                    stp: false,
                    // The kernel's default: 15 s in centiseconds.
                    forward_delay: 1500,
                },
            },
            master("eth0", "lepont"),
            add(addr("lepont", "192.0.2.10/24")),
            del(addr("eth0", "192.0.2.10/24")),
            radd(default),
        ]
    );
}

#[test]
fn families_come_from_the_flag_or_the_first_address() {
    let v6 = |text: &str| match &ops(text)[..] {
        [Op::RouteAdd { route }] => route.family() == Family::Inet6 && route.metric == 1024,
        other => panic!("{other:?}"),
    };
    assert!(v6("ip -6 route add default dev eth0"));
    assert!(v6("ip route add default via 2001:db8::1 dev eth0"));
    assert!(v6("-6 route add default via inet6 fe80::1 dev eth0"));
    assert!(!v6("ip route add default dev eth0 metric 5"));
    assert_eq!(
        error("ip -4 route add default via 2001:db8::1"),
        (1, "2001:db8::1".into(), "not an IPv4 (-4) address".into())
    );
}

#[test]
fn a_route_delete_matches_what_it_leaves_out_as_the_kernel_does() {
    // Two defaults; `del default` without a metric takes the first in dump order.
    let sim = with_nic();
    build(
        &sim,
        &ops("ip addr add 192.0.2.10/24 dev eth0
              ip route add default via 192.0.2.1 metric 100 proto dhcp
              ip route add default via 192.0.2.2 metric 200"),
    );
    Script::parse("ip route del default")
        .unwrap()
        .apply(&sim)
        .unwrap();
    assert!(!has_route(
        &sim.net(),
        "default via 192.0.2.1 dev eth0 proto dhcp scope global metric 100"
    ));
    assert!(has_route(
        &sim.net(),
        "default via 192.0.2.2 dev eth0 proto boot scope global metric 200"
    ));
    // A delete naming a protocol the route does not have matches nothing.
    let e = Script::parse("\n\nip route del default proto static")
        .unwrap()
        .apply(&sim)
        .unwrap_err();
    assert_eq!((e.line, e.error.errno), (3, Some(libc::ESRCH)));
}

#[test]
fn errors_name_the_line_and_the_token() {
    let cases = [
        (
            "ip link add dummy0 type dummy",
            1,
            "dummy",
            "a link type the simulated kernel does not make",
        ),
        (
            "# setup\n\nip addr add 192.0.2.300/24 dev eth0",
            3,
            "192.0.2.300",
            "not an IP address",
        ),
        (
            "ip route add default via 192.0.2.1 dev eth0 weight 3",
            1,
            "weight",
            "a route setting",
        ),
        (
            "ip link set dev eth0 promisc on",
            1,
            "promisc",
            "a link setting",
        ),
        ("ip addr add 192.0.2.10/24", 1, "", "`dev DEV` is missing"),
        (
            "ip addr replace 192.0.2.10/24 dev eth0",
            1,
            "replace",
            "core has no address replace",
        ),
        (
            "brctl addbr br0",
            1,
            "brctl",
            "not a command this parser reads",
        ),
        (
            "ip link set dev eth0 mtu \\\n  huge",
            1,
            "huge",
            "not a number",
        ),
        (
            "ip -x link show",
            1,
            "-x",
            "an option this parser does not know",
        ),
        (
            "ip link set dev eth0 master",
            1,
            "",
            "`master` needs a value",
        ),
        (
            "sysctl -w net.ipv4.ip_forward=1",
            1,
            "net.ipv4.ip_forward",
            "not a knob",
        ),
        (
            "ip neigh add 192.0.2.1 dev eth0",
            1,
            "",
            "`lladdr MAC` is missing",
        ),
        (
            "ip link add averyveryverylongname type bridge",
            1,
            "averyveryverylongname",
            "",
        ),
    ];
    for (text, line, token, message) in cases {
        let (l, t, m) = error(text);
        assert_eq!((l, t.as_str()), (line, token), "{text}: {m}");
        assert!(m.starts_with(message), "{text}: {m}");
    }
    let e = Script::parse("ip link set eth0 up\nip route add 192.0.2.0/33 dev eth0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: `192.0.2.0/33`: the prefix length must be 0 to 32"
    );
}

#[test]
fn comments_continuations_batch_lines_and_reads() {
    let s = Script::parse(
        "#!/bin/sh\n\
         # bring the bridge up\n\
         link set dev lepont up   # batch style\n\
         ip -n ns1 link set dev eth0 \\\n   master lepont\n\
         ip -o -br addr show dev eth0\n\
         ip route show table all\n",
    )
    .unwrap();
    let lines: Vec<(usize, usize, Option<&str>)> = s
        .commands
        .iter()
        .map(|c| (c.line, c.ops.len(), c.netns.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            (3, 1, None),
            (4, 1, Some("ns1")),
            (6, 0, None),
            (7, 0, None)
        ]
    );
    assert_eq!(
        s.commands[1].text,
        "ip -n ns1 link set dev eth0 master lepont"
    );
    assert_eq!(
        s.ops().cloned().collect::<Vec<_>>(),
        [up("lepont"), master("eth0", "lepont")]
    );
}

#[test]
fn addresses_take_broadcast_plus_scope_flags_and_lifetimes() {
    let got = ops("ip addr add 192.0.2.10/26 brd + dev eth0
         ip -6 addr add 2001:db8::10/64 dev eth0 nodad noprefixroute valid_lft 600 preferred_lft 300sec
         ip addr add 203.0.113.1 scope host dev eth0");
    let mut a = addr("eth0", "192.0.2.10/26");
    a.broadcast = Some(ip("192.0.2.63"));
    let mut b = addr("eth0", "2001:db8::10/64");
    b.flags.extend([AddrFlag::Nodad, AddrFlag::Noprefixroute]);
    (b.valid_lft, b.preferred_lft) = (Some(600), Some(300));
    let mut c = addr("eth0", "203.0.113.1/32");
    c.scope = env_qemu_core::model::AddrScope::Host;
    assert_eq!(got, [add(a), add(b), add(c)]);
}

/// What `ci/baseline/bridge.sh` runs for the seed world (eth0 with 192.0.2.10/26,
/// 2001:db8:1::10/64 and a DHCP default route; a tap `tap0`): each `"${ip[@]}"` line of
/// the script with its variables as the script sets them there.
fn bridge_sh_commands() -> Vec<String> {
    let script = include_str!("../../ci/baseline/bridge.sh");
    let addrs = [
        "192.0.2.10/26 brd 192.0.2.63 scope global",
        "2001:db8:1::10/64 scope global nodad",
    ];
    let route = "default via 192.0.2.1 proto dhcp metric 100";
    let mut out = Vec::new();
    for line in script.lines().map(str::trim) {
        let Some(rest) = line.split_once("\"${ip[@]}\"").map(|(_, r)| r) else {
            continue;
        };
        if line.starts_with("ip=") || line.contains("< <(") || line.starts_with("read") {
            continue;
        }
        let rest = rest.trim_end_matches(';').trim();
        let filled = rest
            .replace("\"$bridge\"", "lepont")
            .replace("\"$nic\"", "eth0")
            .replace("\"$mac\"", "52:54:00:10:20:30")
            .replace("\"$mtu\"", "1500")
            .replace("\"$2\"", "tap0")
            .replace("\"$1\"", "eth0");
        let variants: Vec<String> = if filled.contains("$a ") {
            addrs.iter().map(|a| filled.replace("$a", a)).collect()
        } else if filled.contains("${addrs[i]%% *}") {
            addrs
                .iter()
                .map(|a| filled.replace("\"${addrs[i]%% *}\"", &a[..a.find(' ').unwrap()]))
                .collect()
        } else if filled.contains("$r ") {
            [("replace", "lepont"), ("append", "eth0")]
                .iter()
                .map(|(verb, dev)| {
                    filled
                        .replace("\"${family[@]}\" ", "")
                        .replace("\"$verb\"", verb)
                        .replace("$r", route)
                        .replace("\"$dev\"", dev)
                })
                .collect()
        } else {
            vec![filled]
        };
        out.extend(variants.into_iter().map(|v| format!("ip {v}")));
    }
    out
}

#[test]
fn every_ip_command_of_the_shell_baseline_parses() {
    let cmds = bridge_sh_commands();
    // link add, set up, addr add ×2, set master, route replace/append, addr del, link
    // del, the show commands, and add/del of a tap.
    assert!(cmds.len() >= 14, "{cmds:#?}");
    for c in &cmds {
        assert!(!c.contains('$'), "a variable left in {c}");
        let s = Script::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        let reads = c.contains(" show ");
        assert_eq!(s.ops().count() == 0, reads, "{c}");
    }
}

#[test]
fn the_shell_baselines_start_and_stop_restore_the_seed_world() {
    runtime().block_on(async {
        let sim = world::build(&WorldSpec {
            taps: 1,
            ..WorldSpec::seed()
        });
        let before = full_state(&sim).await;
        // bridge.sh start eth0, add tap0, del tap0, stop — its commands in its order.
        let start = Script::parse(
            "ip link add lepont address 52:54:00:10:20:30 mtu 1500 type bridge stp_state 0 forward_delay 0
             ip link set dev lepont up
             ip addr add 192.0.2.10/26 brd 192.0.2.63 scope global dev lepont
             ip addr add 2001:db8:1::10/64 scope global nodad dev lepont
             ip link set dev eth0 master lepont
             ip route replace default via 192.0.2.1 proto dhcp metric 100 dev lepont
             ip addr del 2001:db8:1::10/64 dev eth0
             ip addr del 192.0.2.10/26 dev eth0
             ip link set dev tap0 master lepont
             ip link set dev tap0 up",
        )
        .unwrap();
        start.apply(&sim).unwrap();
        let net = sim.net();
        assert_eq!(link(&net, "eth0").master, Some(n("lepont")));
        // Only the kernel's link-local is left on the port.
        assert_eq!(addrs(&net, "eth0"), ["fe80::5054:ff:fe10:2030/64"]);
        assert!(has_route(
            &net,
            "default via 192.0.2.1 dev lepont proto dhcp scope global metric 100"
        ));
        let stop = Script::parse(
            "ip link set dev tap0 nomaster
             ip link set dev tap0 down
             ip addr add 192.0.2.10/26 brd 192.0.2.63 scope global dev eth0
             ip addr add 2001:db8:1::10/64 scope global nodad dev eth0
             ip route append default via 192.0.2.1 proto dhcp metric 100 dev eth0
             ip link del dev lepont",
        )
        .unwrap();
        stop.apply(&sim).unwrap();
        let diff = env_qemu_backend_fake::testkit::differences(&before, &full_state(&sim).await);
        assert!(diff.is_empty(), "{diff:#?}");
        // Every command above is one the script runs, word for word.
        let baseline = bridge_sh_commands();
        for c in start.commands.iter().chain(&stop.commands) {
            assert!(baseline.contains(&c.text), "{} is not in bridge.sh", c.text);
        }
    });
}

/// What a plan's operation sends, as its `ip` command line carries it: an address's
/// kernel state (secondary, tentative) is not sent; `ip addr del` names only the address;
/// `ip route del` without a type matches any type.
fn as_sent(op: &Op) -> Op {
    let sent = |a: &Address| {
        let mut a = a.clone();
        a.secondary = false;
        a.flags.retain(|f| f.is_configurable());
        a
    };
    match op {
        Op::AddrAdd { address } => add(sent(address)),
        Op::AddrDel { address } => del(Address::new(
            address.dev.clone(),
            address.ip,
            address.prefix_len,
        )),
        Op::RouteDel { route } if route.kind == RouteType::Unicast => {
            let mut r = route.clone();
            r.kind = RouteType::Other(0);
            rdel(r)
        }
        op => op.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases().min(300), ..ProptestConfig::default() })]

    /// Every operation env-qemu's start and stop plans print reads back as itself: the
    /// parser takes what `--dry-run` shows, and what `Op`'s display writes is what `ip`
    /// would need.
    #[test]
    fn plan_commands_read_back_as_the_operations(w in world_spec()) {
        runtime().block_on(async {
            let sim = world::build(&w);
            let store = MemoryStore::new();
            let mut noop = |_: env_qemu_core::exec::Event<'_>| {};
            let mut printed: Vec<Op> = Vec::new();
            let req = common::script::request(Target::Nic(0), Some(512));
            if let Ok(plan) = plan_start(&full_state(&sim).await, &req) {
                printed.extend(plan.steps);
            }
            let start = Cmd::Start { uplink: Target::Nic(0), shm_mb: Some(512) };
            if let Some(Ok(Some(_))) = run_on(&sim, &sim, &store, start, &mut noop).await {
                let stop = Cmd::Stop { force: true };
                if let Some(Ok(Some(r))) = run_on(&sim, &sim, &store, stop, &mut noop).await {
                    printed.extend(r.plan.steps);
                }
            }
            for op in printed.iter().filter(|o| !matches!(o, Op::AwaitDad { .. } | Op::Host { .. })) {
                let line = op.to_string();
                let back = Script::parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
                let back: Vec<Op> = back.ops().cloned().collect();
                prop_assert_eq!(back, vec![as_sent(op)], "{}", line);
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

#[test]
fn link_set_gives_one_operation_per_setting_in_order() {
    assert_eq!(
        ops("ip link set eth0 down address 02:00:00:00:00:01 mtu 9000 nomaster up"),
        [
            down("eth0"),
            set("eth0", LinkChange::Mac(mac("02:00:00:00:00:01"))),
            set("eth0", LinkChange::Mtu(9000)),
            set("eth0", LinkChange::NoMaster),
            up("eth0"),
        ]
    );
    assert_eq!(
        ops("ip tuntap add dev vm0 mode tap user 1000\nip link add v0 type veth peer name v1"),
        [
            Op::LinkAdd {
                spec: LinkSpec::Tap {
                    name: n("vm0"),
                    owner: Some(1000),
                    group: None
                }
            },
            veth("v0", "v1"),
        ]
    );
}

#[test]
fn apply_stops_at_the_first_refusal_and_apply_all_goes_on() {
    let text = "ip link set dev eth9 up\nip link add lepont type bridge\n";
    let script = Script::parse(text).unwrap();
    let sim = with_nic();
    let e = script.apply(&sim).unwrap_err();
    assert_eq!((e.line, e.error.errno), (1, Some(libc::ENODEV)));
    assert!(sim.net().link(&n("lepont")).is_none(), "stopped at line 1");
    let all = script.apply_all(&sim);
    assert_eq!(all.iter().map(|e| e.line).collect::<Vec<_>>(), [1]);
    assert!(sim.net().link(&n("lepont")).is_some(), "line 2 ran");
    assert_eq!(
        Script::parse("ip addr add 192.0.2.1/24")
            .unwrap_err()
            .to_string(),
        "line 1: at the end: `dev DEV` is missing"
    );
}

#[test]
fn a_seed_chooses_one_world() {
    assert_eq!(WorldSpec::generate(7), WorldSpec::generate(7));
    let worlds: Vec<WorldSpec> = (0..8).map(WorldSpec::generate).collect();
    assert!(worlds.iter().any(|w| *w != worlds[0]), "{worlds:#?}");
    assert!(worlds.iter().all(|w| (1..=4).contains(&w.nics.len())));
}
