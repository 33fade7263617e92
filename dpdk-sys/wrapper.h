/* Everything RVS's data plane uses from DPDK. rte_config.h must come first. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ring.h>
#include <rte_malloc.h>
#include <rte_version.h>

/* rte_errno is a thread-local macro; Rust cannot name it directly. */
int rvs_rte_errno(void);
