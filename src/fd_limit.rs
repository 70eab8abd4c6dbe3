//! The open-file limit. Container runtimes (containerd 2.x) and many
//! service managers start processes with a soft limit of 1024 and a much
//! higher hard limit; a proxy needs two descriptors per client. kgate
//! raises its soft limit to the hard limit at start, as the Go runtime
//! does for every Go program, and logs what it got.

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (before,
/// after), or `None` when the limit cannot be read.
pub fn raise() -> Option<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return None;
    }
    let before = l.rlim_cur;
    if l.rlim_cur < l.rlim_max {
        let want = libc::rlimit {
            rlim_cur: l.rlim_max,
            rlim_max: l.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; lowering or raising
        // the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            l.rlim_cur = l.rlim_max;
        }
    }
    Some((before, l.rlim_cur))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let (before, after) = super::raise().expect("getrlimit");
        assert!(after >= before);
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        assert_eq!(l.rlim_cur, l.rlim_max, "soft limit raised to the hard limit");
        assert_eq!(after, l.rlim_cur);
    }
}
