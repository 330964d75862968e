//! Tells the tests which outside services they were built to use: a test needing
//! PostgreSQL or Redis is compiled as ignored (with the reason, so the test run lists
//! it as such) unless `STUDYHALL_TEST_POSTGRES_URL` / `STUDYHALL_TEST_REDIS_URL` is set;
//! the console's browser test likewise unless `chromedriver` is on the PATH (or
//! `STUDYHALL_TEST_BROWSER=required`, when a missing browser must fail the test).

fn main() {
    browser();
    for (variable, cfg) in [
        ("STUDYHALL_TEST_POSTGRES_URL", "postgres_tests"),
        ("STUDYHALL_TEST_REDIS_URL", "redis_tests"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var_os(variable).is_some_and(|value| !value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

fn browser() {
    println!("cargo::rustc-check-cfg=cfg(browser_tests)");
    println!("cargo::rerun-if-env-changed=STUDYHALL_TEST_BROWSER");
    println!("cargo::rerun-if-env-changed=PATH");
    let required = std::env::var("STUDYHALL_TEST_BROWSER").is_ok_and(|value| value == "required");
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("chromedriver").is_file())
    });
    if required || found {
        println!("cargo::rustc-cfg=browser_tests");
    }
}
