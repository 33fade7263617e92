//! The Environment Abstraction Layer: initialisation, lcores, cleanup.

use super::DpdkError;
use std::ffi::{c_int, c_uint, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is initialised; dropping it runs `rte_eal_cleanup`.
/// Only one can exist per process (DPDK cannot be initialised twice).
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

/// An EAL logical core that can run a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lcore(pub u32);

impl Eal {
    /// Initialises DPDK with `args` (without the program name).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new("rte_eal_init (already initialised in this process)", libc_eal_already()));
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("rvsd").expect("no NUL"));
        for a in args {
            match CString::new(a.as_str()) {
                Ok(c) => owned.push(c),
                Err(_) => return Err(DpdkError::new(format!("EAL argument {a:?} contains NUL"), 22)),
            }
        }
        // The EAL may keep pointers into argv (device arguments) for the
        // life of the process, so the strings are deliberately leaked.
        let mut argv: Vec<*mut std::ffi::c_char> = owned.into_iter().map(CString::into_raw).collect();
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid NUL-terminated strings that are never
        // freed; the EAL is initialised at most once per process (guarded above).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(argv);
        if rc < 0 {
            return Err(DpdkError::from_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// The worker lcores (every enabled lcore but the main one), in order.
    pub fn worker_lcores(&self) -> Vec<Lcore> {
        let mut out = Vec::new();
        let mut i: c_uint = u32::MAX; // -1: start from the first lcore
        loop {
            // SAFETY: EAL is initialised (self exists); pure lookup.
            i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
            if i >= dpdk_sys::RTE_MAX_LCORE {
                break;
            }
            out.push(Lcore(i));
        }
        out
    }

    /// Runs `f` on `lcore`. The closure owns everything it needs; it runs
    /// until it returns. Join with [`Eal::wait_all`].
    pub fn launch<F: FnOnce() + Send + 'static>(&self, lcore: Lcore, f: F) -> Result<(), DpdkError> {
        extern "C" fn trampoline(arg: *mut c_void) -> c_int {
            // SAFETY: arg is the Box<Box<dyn FnOnce>> leaked by `launch`,
            // handed to exactly one lcore, so it is reclaimed exactly once.
            let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
            // A panic cannot unwind out of an extern "C" fn: the process
            // aborts, loudly, which is what a broken worker must do.
            f();
            0
        }
        let boxed: Box<Box<dyn FnOnce() + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: trampoline matches lcore_function_t; arg stays valid until
        // the trampoline takes it back.
        let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if rc != 0 {
            // SAFETY: the launch failed, so the lcore never saw arg: reclaim it.
            drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) });
            return Err(DpdkError::new(format!("rte_eal_remote_launch on lcore {}", lcore.0), rc));
        }
        Ok(())
    }

    /// Waits until every worker lcore has returned.
    pub fn wait_all(&self) {
        // SAFETY: called from the main lcore with the EAL initialised.
        unsafe { dpdk_sys::rte_eal_mp_wait_lcore() };
    }

    /// The lcore this thread runs on (`None` for non-EAL threads).
    pub fn current_lcore() -> Option<Lcore> {
        // SAFETY: reads a thread-local; valid on any thread.
        let id = unsafe { dpdk_sys::rte_lcore_id() };
        (id < dpdk_sys::RTE_MAX_LCORE).then_some(Lcore(id))
    }
}

fn libc_eal_already() -> i32 {
    114 // EALREADY
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: workers were joined by their owners before the Eal is
        // dropped (rvsd drops ports and pools first); cleanup runs once.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}
