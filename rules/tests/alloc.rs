//! Route lookup must not allocate, on a hit or on a miss.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pve_migration_rules::RuleSet;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: defers to the system allocator; only counts calls per thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn route_lookup_does_not_allocate() {
    let rules = RuleSet::with_defaults();
    let hits = [
        ("GET", "/api2/json/nodes/pve1/network/vmbr0"),
        (
            "PUT",
            "/api2/extjs/cluster/sdn/vnets/v1/subnets/z-10.0.0.0-24/",
        ),
        ("GET", "/api2/json/nodes/pve1/network?type=bridge"),
    ];
    let misses = [
        ("GET", "/api2/json/nodes/pve1/status"),
        ("GET", "/api2/htmljs/nodes/pve1/network"),
        ("HEAD", "/api2/json/nodes/pve1/network"),
        ("GET", "/api2/json/cluster/sdn/zones/z1/extra/more"),
    ];
    let n = allocations_during(|| {
        for (m, p) in hits {
            let r = rules.route(m, p).expect("hit");
            std::hint::black_box((r.endpoint().id(), r.param("node"), r.params().len()));
        }
    });
    assert_eq!(n, 0, "route hits allocated");
    let n = allocations_during(|| {
        for (m, p) in misses {
            assert!(std::hint::black_box(rules.route(m, p)).is_none());
        }
    });
    assert_eq!(n, 0, "route misses allocated");
    // The counter does count.
    assert!(allocations_during(|| drop(RuleSet::with_defaults())) > 0);
}
