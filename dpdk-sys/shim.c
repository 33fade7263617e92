/* Hand-written accessors for things bindgen cannot wrap (macros, TLS). */
#include "wrapper.h"

int rvs_rte_errno(void) { return rte_errno; }
