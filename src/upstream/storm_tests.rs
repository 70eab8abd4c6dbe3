use super::*;

fn limits(rate: u32, burst: u32, max: usize, wait_ms: u64) -> StormLimits {
    StormLimits {
        rate,
        burst,
        max_per_broker: max,
        wait: Duration::from_millis(wait_ms),
    }
}

/// Admits `n` connections at once; returns when each one got through,
/// relative to the start.
async fn storm_of(s: &Arc<Storm>, key: &str, n: usize) -> Vec<Duration> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let s = s.clone();
        let key = key.to_string();
        set.spawn(async move {
            let slot = s.admit(&key).await.expect("admitted");
            let at = start.elapsed();
            drop(slot);
            at
        });
    }
    let mut at: Vec<Duration> = set.join_all().await;
    at.sort();
    at
}

#[tokio::test(start_paused = true)]
async fn a_storm_is_spread_at_the_rate_after_the_burst() {
    let s = Arc::new(Storm::new(limits(50, 10, 10_000, 60_000)));
    let at = storm_of(&s, "b-1:9098", 210).await;
    assert_eq!(at.len(), 210, "every connection is admitted in the end");
    assert!(at[..10].iter().all(|d| d.is_zero()), "the burst goes at once");
    assert!(at[10] > Duration::ZERO, "the 11th waits");
    // 200 beyond the burst at 50/s: the last one at 4 s.
    let last = at[209];
    assert!(
        last >= Duration::from_millis(3990) && last <= Duration::from_millis(4010),
        "{last:?}"
    );
    // In any one-second window no more than rate + burst got through.
    for (i, t) in at.iter().enumerate() {
        let within = at[i..]
            .iter()
            .filter(|u| **u < *t + Duration::from_secs(1))
            .count();
        assert!(within <= 60, "{within} admitted in the second from {t:?}");
    }
    let st = &s.snapshot()[0];
    assert_eq!((st.waits, st.open, st.refused_rate), (200, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn brokers_have_separate_buckets() {
    let s = Arc::new(Storm::new(limits(10, 1, 100, 60_000)));
    let _a = s.admit("a:1").await.unwrap();
    let t = Instant::now();
    let _b = s.admit("b:1").await.unwrap();
    assert!(t.elapsed().is_zero(), "another broker's storm does not slow b");
    let _a2 = s.admit("a:1").await.unwrap();
    assert_eq!(t.elapsed(), Duration::from_millis(100), "a's second waits 1/rate");
}

#[tokio::test(start_paused = true)]
async fn over_the_maximum_is_refused_and_a_slot_gives_its_place_back() {
    let s = Storm::new(limits(1000, 1000, 2, 1000));
    let a = s.admit("b:1").await.unwrap();
    let _b = s.admit("b:1").await.unwrap();
    assert_eq!(s.admit("b:1").await.unwrap_err(), Refused::Max { max: 2 });
    assert_eq!(Refused::Max { max: 2 }.label(), "max_connections");
    drop(a);
    let _c = s.admit("b:1").await.expect("a closed connection frees its place");
    let st = &s.snapshot()[0];
    assert_eq!((st.open, st.refused_max), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_is_refused_without_spending_a_token() {
    let s = Storm::new(limits(1, 1, 100, 1500));
    let _first = s.admit("b:1").await.unwrap();
    // The second waits 1 s (within 1.5 s); reserve it without waiting.
    let second = s.admit("b:1");
    let e = {
        tokio::pin!(second);
        assert!(futures_poll(&mut second).is_none(), "the second waits");
        // A third would wait 2 s: refused at once.
        let e = s.admit("b:1").await.unwrap_err();
        second.await.expect("the second gets through after its wait");
        e
    };
    assert!(matches!(e, Refused::Rate { wait_ms: 1500 }), "{e:?}");
    assert!(e.to_string().contains("upstream_connect_wait_ms"));
    let st = &s.snapshot()[0];
    assert_eq!((st.refused_rate, st.waits), (1, 1));
}

/// Polls once.
fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test(start_paused = true)]
async fn too_many_connects_halves_the_rate_and_it_recovers_additively() {
    let s = Storm::new(limits(40, 5, 100, 60_000));
    assert_eq!(s.rate("b:1"), 40.0);
    s.slow_down("b:1");
    assert_eq!(s.rate("b:1"), 20.0);
    s.slow_down("b:1");
    assert_eq!(s.rate("b:1"), 20.0, "refusals arriving together cut once");
    tokio::time::advance(Duration::from_secs(1)).await;
    // Recovery is 40/20 = 2 per second.
    assert!((s.rate("b:1") - 22.0).abs() < 1e-6, "{}", s.rate("b:1"));
    s.slow_down("b:1");
    assert!((s.rate("b:1") - 11.0).abs() < 1e-6);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.rate("b:1"), 40.0, "back to the configured rate, no further");
    let one = Storm::new(limits(1, 1, 100, 60_000));
    one.slow_down("b:1");
    assert_eq!(one.rate("b:1"), MIN_RATE, "never below 1/s");
    assert_eq!(s.snapshot()[0].slowdowns, 2);
}

#[tokio::test(start_paused = true)]
async fn after_a_slow_down_the_burst_is_gone_and_admissions_follow_the_lower_rate() {
    let s = Arc::new(Storm::new(limits(10, 10, 100, 60_000)));
    s.slow_down("b:1");
    let t = Instant::now();
    let _a = s.admit("b:1").await.unwrap();
    // Rate 5/s and no saved tokens: the first waits 1/5 s.
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(195) && waited <= Duration::from_millis(205),
        "{waited:?}"
    );
}
