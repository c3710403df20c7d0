//! `env-qemu tap create|delete`: persistent taps owned by a user and already on the bridge,
//! so QEMU runs unprivileged with `-netdev tap,ifname=NAME,script=no,downscript=no`.
//! This replaces the seed's `chmod 666 /dev/net/tun`: only the named user (and group) may
//! open this one tap.

use env_qemu_core::commands;
use env_qemu_core::model::{IfName, LinkKind};
use env_qemu_core::op::{LinkSpec, Op};
use env_qemu_core::Kernel;

use crate::args::TapCommand;
use crate::context::{ifname, Ctx};
use crate::exit::{Code, Failure};
use crate::output::Out;

pub async fn run(ctx: &Ctx, out: Out, c: &TapCommand) -> Result<(), Failure> {
    let store = ctx.store(out).await?;
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(&store, &mut observer);
    match c {
        TapCommand::Create { name, user, group } => {
            let live = ctx.kernel.dump().await?;
            let name = match name {
                Some(n) => ifname(n)?,
                None => (0..)
                    .map(|i| IfName::new(format!("eqtap{i}")).expect("short name"))
                    .find(|n| live.link(n).is_none())
                    .expect("some eqtapN is free"),
            };
            let owner = match user {
                Some(u) => Some(uid(u)?),
                None => std::env::var("SUDO_UID").ok().and_then(|v| v.parse().ok()),
            };
            let group = group.as_deref().map(gid).transpose()?;
            // Refuse before creating anything if env-qemu is not started.
            commands::plan_stop(&env, true).await?;
            let spec = LinkSpec::Tap {
                name: name.clone(),
                owner,
                group,
            };
            ctx.kernel.apply(&Op::LinkAdd { spec }).await?;
            if let Err(e) = commands::add(&mut env, &name).await {
                let _ = ctx.kernel.apply(&Op::LinkDel { name: name.clone() }).await;
                return Err(e.into());
            }
            out.say(format!(
                "env-qemu: {name} created{} and attached to {}; use -netdev tap,id=n0,ifname={name},script=no,downscript=no",
                owner.map(|u| format!(" for uid {u}")).unwrap_or_default(),
                ctx.bridge
            ));
            println!("{name}");
        }
        TapCommand::Delete { name } => {
            let name = ifname(name)?;
            let live = ctx.kernel.dump().await?;
            let link = live.link(&name).ok_or_else(|| {
                Failure::new(
                    Code::NotFound,
                    format!(
                        "interface {name} not found; list taps with `ip -d link show type tun`"
                    ),
                )
            })?;
            if !matches!(link.kind, LinkKind::Tap(_)) {
                return Err(Failure::new(
                    Code::Conflict,
                    format!(
                        "interface {name} is a {}, not a tap: `tap delete` deletes only taps",
                        link.kind.name()
                    ),
                ));
            }
            if link.master.as_ref() == Some(&ctx.bridge) {
                commands::del(&mut env, &name).await?;
            }
            ctx.kernel
                .apply(&Op::LinkDel { name: name.clone() })
                .await?;
            out.say(format!("env-qemu: {name} deleted"));
        }
    }
    Ok(())
}

fn uid(u: &str) -> Result<u32, Failure> {
    if let Ok(n) = u.parse() {
        return Ok(n);
    }
    match nix::unistd::User::from_name(u) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        _ => Err(Failure::new(
            Code::NotFound,
            format!("user {u} not found (see `getent passwd`)"),
        )),
    }
}

fn gid(g: &str) -> Result<u32, Failure> {
    if let Ok(n) = g.parse() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        _ => Err(Failure::new(
            Code::NotFound,
            format!("group {g} not found (see `getent group`)"),
        )),
    }
}
