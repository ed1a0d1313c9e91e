use super::*;

// Failpoints are process-global: each test uses names of its own.

#[test]
fn unset_failpoints_do_nothing() {
    assert!(!hit("tests::never_set"));
    assert_eq!(eval("tests::never_set"), None);
}

#[test]
fn counts_run_out() {
    set("tests::count", "2*error").unwrap();
    assert!(hit("tests::count"));
    assert!(hit("tests::count"));
    assert!(!hit("tests::count"));
    assert!(!list().iter().any(|(n, _)| n == "tests::count"));
}

#[test]
fn specs_parse_and_bad_ones_are_refused() {
    set("tests::sleep", "sleep(5)").unwrap();
    assert_eq!(eval("tests::sleep"), Some(Action::Sleep(Duration::from_millis(5))));
    set("tests::sleep", "off").unwrap();
    assert_eq!(eval("tests::sleep"), None);
    for bad in ["", "sleep", "sleep(x)", "x*error", "explode"] {
        assert!(set("tests::bad", bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn panic_panics() {
    set("tests::panic", "1*panic").unwrap();
    let r = std::panic::catch_unwind(|| hit("tests::panic"));
    assert!(r.is_err());
}

#[test]
fn pause_holds_the_site_until_cleared() {
    set("tests::pause", "pause").unwrap();
    // Timed from here, not from the thread's start: a loaded machine may
    // start the thread late, but it can never pass the site before clear.
    let start = std::time::Instant::now();
    let t = std::thread::spawn(|| {
        hit("tests::pause");
        std::time::Instant::now()
    });
    std::thread::sleep(Duration::from_millis(100));
    clear("tests::pause");
    let held = t.join().unwrap() - start;
    assert!(held >= Duration::from_millis(100), "paused only {held:?}");
}

#[test]
fn env_specs_are_read() {
    std::env::set_var("METASTORE_FAILPOINTS", "tests::env_a=error; tests::env_b=3*sleep(1)");
    init_from_env().unwrap();
    std::env::remove_var("METASTORE_FAILPOINTS");
    assert_eq!(eval("tests::env_a"), Some(Action::Error));
    assert_eq!(eval("tests::env_b"), Some(Action::Sleep(Duration::from_millis(1))));
}
