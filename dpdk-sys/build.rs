//! Generates bindings for the system DPDK (found by pkg-config) and compiles
//! C wrappers for its `static inline` functions, which have no symbol in the
//! shared libraries.

use std::env;
use std::path::PathBuf;

const APT_HINT: &str = "apt-get install -y libdpdk-dev dpdk-dev pkg-config clang libclang-dev";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!("\nerror: DPDK 22.11 (pkg-config package libdpdk) was not found.");
            eprintln!("       On Debian 12, as root: {APT_HINT}");
            eprintln!("       pkg-config said: {}\n", e.to_string().trim().replace('\n', "\n         "));
            std::process::exit(1);
        }
    };

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wrappers_c = out.join("static_fns.c");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));

    let mut builder = bindgen::Builder::default()
        .header(manifest.join("wrapper.h").to_string_lossy())
        .clang_arg("-include")
        .clang_arg("rte_config.h")
        .allowlist_function("rte_.*|rvs_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|RING_F_.*")
        // Packed structs that contain aligned members: rustc rejects them (E0588).
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("static_fns"))
        .layout_tests(true)
        .generate_comments(false);
    for inc in &dpdk.include_paths {
        builder = builder.clang_arg(format!("-I{}", inc.display()));
    }
    for (k, v) in &dpdk.defines {
        builder = builder.clang_arg(match v {
            Some(v) => format!("-D{k}={v}"),
            None => format!("-D{k}"),
        });
    }

    // bindgen panics when libclang cannot be loaded; turn that into advice.
    let generated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    let bindings = match generated {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("\nerror: bindgen failed on the DPDK headers: {e}");
            eprintln!("       On Debian 12, as root: {APT_HINT}\n");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("\nerror: bindgen could not run libclang.");
            eprintln!("       On Debian 12, as root: {APT_HINT}\n");
            std::process::exit(1);
        }
    };
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs to OUT_DIR");

    let mut cc = cc::Build::new();
    cc.file(&wrappers_c)
        .file(manifest.join("shim.c"))
        .include(&manifest)
        .flag("-include")
        .flag("rte_config.h")
        .flag_if_supported("-march=corei7")
        .opt_level(2)
        .warnings(false);
    for inc in &dpdk.include_paths {
        cc.include(inc);
    }
    cc.compile("rvs_dpdk_shim");
}
