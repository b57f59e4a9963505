//! Upper bounds on every size a scenario can write, checked when it is loaded.
//!
//! A size becomes real memory or real disk: `send.size` is a message built in
//! memory, `quota` and `fill_disk` a ballast allocated on the host (on `vfs`, a
//! file in the temporary folder; on `tmpfs`, RAM). Unbounded, one typo
//! (`size: 3GiB`, `quota: 18446744073709551615`) exhausts the host; bounded, it is
//! a located error like any other.

use super::locate::{Seg, Target};
use super::model::{Fault, Scenario, Size, Step};
use super::validate::Problem;

/// The largest `sandbox.quota`, `fill_disk.leave`, `connector.low_water_mark`,
/// `connector.max_message_size` and `when.after_data_bytes`: 1 GiB.
pub const MAX_SIZE: u64 = 1 << 30;

/// The largest `send.size`: 64 MiB (the real client builds the whole message in
/// memory, several copies of it).
pub const MAX_SEND_SIZE: u64 = 64 << 20;

/// The smallest `sandbox.quota`: one 4 KiB block (space comes in whole blocks, and
/// a volume of none would be unlimited on tmpfs).
pub const MIN_QUOTA: u64 = sandbox::BLOCK;

/// Checks the sizes outside the steps (`sandbox`, `connector`) against their bounds.
pub(crate) fn check_header(scenario: &Scenario) -> Result<(), Problem> {
    let key = |k: &str| Seg::from(k);
    if let Some(q) = scenario.sandbox.quota {
        let at = vec![key("sandbox"), key("quota")];
        if q.bytes() < MIN_QUOTA {
            return Err(Problem::new(
                at,
                Target::Value,
                format!(
                    "`quota` is {} bytes: a volume needs at least {MIN_QUOTA} bytes (one block)",
                    q.bytes()
                ),
            )
            .label("too small")
            .help("for example `quota: 64KiB`"));
        }
        at_most(q, MAX_SIZE, "quota", at)?;
    }
    let c = &scenario.connector;
    if let Some(s) = c.low_water_mark {
        at_most(
            s,
            MAX_SIZE,
            "low_water_mark",
            vec![key("connector"), key("low_water_mark")],
        )?;
    }
    if let Some(s) = c.max_message_size {
        at_most(
            s,
            MAX_SIZE,
            "max_message_size",
            vec![key("connector"), key("max_message_size")],
        )?;
    }
    Ok(())
}

/// Checks the sizes of step `i` (0-based) against their bounds.
pub(crate) fn check_step(i: usize, step: &Step) -> Result<(), Problem> {
    let here = |rest: &[&str]| {
        let mut at = vec![Seg::from("steps"), Seg::from(i)];
        at.extend(rest.iter().map(|k| Seg::from(*k)));
        at
    };
    if let Some(size) = step.send.as_ref().and_then(|s| s.size) {
        at_most(size, MAX_SEND_SIZE, "send.size", here(&["send", "size"]))?;
    }
    if let Some(Fault::FillDisk { leave }) = &step.fault {
        at_most(
            *leave,
            MAX_SIZE,
            "fill_disk.leave",
            here(&["fault", "fill_disk", "leave"]),
        )?;
    }
    if let Some(n) = step.when.as_ref().and_then(|w| w.after_data_bytes) {
        at_most(
            Size(n),
            MAX_SIZE,
            "after_data_bytes",
            here(&["when", "after_data_bytes"]),
        )?;
    }
    Ok(())
}

fn at_most(size: Size, max: u64, what: &str, at: Vec<Seg>) -> Result<(), Problem> {
    if size.bytes() <= max {
        return Ok(());
    }
    Err(Problem::new(
        at,
        Target::Value,
        format!(
            "`{what}` is {} bytes, more than the {} bytes ({}) it may be",
            size.bytes(),
            max,
            human(max)
        ),
    )
    .label(format!("at most {}", human(max)))
    .help("sizes are bounded so that a scenario cannot exhaust the host's memory or disk"))
}

/// `1GiB`, `64MiB`: the bounds are whole binary units.
fn human(n: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= scale && n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n} bytes")
}
