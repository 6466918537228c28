#ifndef KITE_NODE_H
#define KITE_NODE_H

/* Node states (DESIGN.md, "Node actor"). The transition table lives in pool/node.c. */
#define KITE_NODE_STATE_MAP(X)                                                               \
  X(INIT)                                                                                    \
  X(PROVISIONING)                                                                            \
  X(BOOTSTRAPPING)                                                                           \
  X(READY)                                                                                   \
  X(DRAINING)                                                                                \
  X(REPLACING)                                                                               \
  X(TERMINATING)                                                                             \
  X(TERMINATED)                                                                              \
  X(FAILED)

typedef enum kite_node_state {
#define KITE__NS_ENUM(name) KITE_NODE_##name,
  KITE_NODE_STATE_MAP(KITE__NS_ENUM)
#undef KITE__NS_ENUM
  KITE_NODE__COUNT
} kite_node_state_t;

/* "READY", "FAILED", …; "UNKNOWN" for a value outside the enum. */
const char *kite_node_state_name(int state);

#endif
