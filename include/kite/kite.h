#ifndef KITE_KITE_H
#define KITE_KITE_H

/* libkite: pools of compute nodes on clouds, bootstrapped over SSH, broadcasting work and
 * replacing lost nodes, all on one libuv loop. Include this header; it includes the rest. */

#include "kite/version.h"
#include "kite/error.h"
#include "kite/log.h"
#include "kite/runtime.h"
#include "kite/node.h"
#include "kite/events.h"
#include "kite/bus.h"
#include "kite/monitor.h"
#include "kite/offer.h"
#include "kite/cost.h"
#include "kite/catalog.h"
#include "kite/store.h"
#include "kite/transport.h"
#include "kite/bootstrap.h"
#include "kite/provider.h"
#include "kite/registry.h"
#include "kite/pool.h"
#include "kite/spec.h"
#include "kite/providers.h"

#endif
