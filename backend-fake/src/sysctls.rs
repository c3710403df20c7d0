//! `net.ipv6.conf.{all,default,DEV}.{autoconf,accept_ra,accept_dad,use_tempaddr,ra_defrtr_metric}`.

use env_qemu_core::model::SysctlKey;

use crate::error::{Fail, Res};
use crate::state::{Knobs, Ns};

fn no_file() -> Fail {
    Fail::new(libc::ENOENT, "No such file or directory")
}

/// A device's directory exists only while it has an inet6_dev: gone with the device and
/// while its MTU is below 1280.
fn knobs(ns: &Ns, key: &SysctlKey) -> Res<Knobs> {
    match key.dev.as_str() {
        "all" => Ok(ns.conf_all),
        "default" => Ok(ns.conf_default),
        _ => {
            let i = ns.idx(&key.dev).ok_or_else(no_file)?;
            ns.dev(i).v6.as_ref().map(|v| v.conf).ok_or_else(no_file)
        }
    }
}

pub(crate) fn read(ns: &Ns, key: &SysctlKey) -> Res<String> {
    Ok(knobs(ns, key)?.get(key.knob).to_string())
}

/// proc_dointvec: any int, surrounding blanks allowed, nothing else. `default` only
/// seeds devices created (or given IPv6 back) later; `all.accept_dad` joins each
/// device's own in the DAD decision.
pub(crate) fn set(ns: &mut Ns, key: &SysctlKey, value: &str) -> Res {
    knobs(ns, key)?;
    let invalid = || Fail::new(libc::EINVAL, "Invalid argument");
    let v: i64 = value.trim().parse().map_err(|_| invalid())?;
    let knobs = match key.dev.as_str() {
        "all" => &mut ns.conf_all,
        "default" => &mut ns.conf_default,
        _ => {
            let i = ns.idx(&key.dev).ok_or_else(no_file)?;
            match ns.dev_mut(i).v6.as_mut() {
                Some(v6) => &mut v6.conf,
                None => return Ok(()),
            }
        }
    };
    knobs.set(key.knob, v).ok_or_else(invalid)
}
