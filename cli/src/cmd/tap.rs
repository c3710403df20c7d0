//! `env-qemu tap create|delete`: persistent taps owned by a user and already on the bridge,
//! so QEMU runs unprivileged with `-netdev tap,ifname=NAME,script=no,downscript=no`.
//! This replaces the seed's `chmod 666 /dev/net/tun`: only the named user (and group) may
//! open this one tap.

use env_qemu_core::commands::{self, TapRequest};

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
            let owner = match user {
                Some(u) => Some(uid(u)?),
                None => std::env::var("SUDO_UID").ok().and_then(|v| v.parse().ok()),
            };
            let req = TapRequest {
                name: name.as_deref().map(ifname).transpose()?,
                owner,
                group: group.as_deref().map(gid).transpose()?,
                holder: None,
            };
            let made = commands::make_tap(&mut env, &req).await?;
            let name = made.name;
            out.say(format!(
                "env-qemu: {name} created{} and attached to {}; use -netdev tap,id=n0,ifname={name},script=no,downscript=no; `env-qemu stop` deletes it",
                owner.map(|u| format!(" for uid {u}")).unwrap_or_default(),
                ctx.bridge
            ));
            println!("{name}");
        }
        TapCommand::Delete { name } => {
            let name = ifname(name)?;
            commands::delete_tap(&mut env, &name).await?;
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
