//! Tells the tests which outside services they were built to use: a test needing
//! PostgreSQL or Redis is compiled as ignored (with the reason, so the test run lists
//! it as such) unless `STUDYHALL_TEST_POSTGRES_URL` / `STUDYHALL_TEST_REDIS_URL` is set.

fn main() {
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
