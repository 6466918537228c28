#ifndef KITE_EVENTS_H
#define KITE_EVENTS_H

/* The event table: the single source of truth for every event type. From it come the enum
 * (KITE_EV_<NAME>), the name ("node_state_changed"), the payload struct (kite_ev_<name>_t),
 * the routing key (one payload field), the JSON form, and the typed functions of bus.h
 * (kite_on_<name>, kite_emit_<name>, kite_request_<name>, kite_respond_<name>,
 * kite_reply_<name>).
 *
 * Adding an event is one line in KITE_EVENT_TABLE plus its KITE_EV_<name>_FIELDS list.
 *
 * Column meanings: X(ENUM_SUFFIX, name, class, key_field)
 *   class REQUEST: asks for something; its responder answers with exactly one reply.
 *   class FACT:    says something happened; never dropped (may exceed the queue bound).
 *   class BULK:    a fact that carries bulk data (task output); subject to back-pressure:
 *                  emitting it returns KITE_EAGAIN when the queue is full.
 *   key_field: the payload field whose value is the routing key (a string field is hashed
 *              with kite_key_str()); "none" routes everything under key 0.
 *
 * Field kinds: U64 I64 U32 I32 DBL BOOL, STR (const char *, NUL-terminated, may be NULL),
 * BYTES (kite_bytes_t), NSTATE (a kite_node_state_t, encoded by name), ERR (a kite error
 * code, encoded by name). Strings and bytes are copied into the queue at emit and are valid
 * only while the handler runs. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kite_bytes {
  const void *ptr;
  size_t len;
} kite_bytes_t;

#define KITE_EVENT_TABLE(X)                                                                        \
  /* requests */                                                                                   \
  X(POOL_OPEN, pool_open, REQUEST, pool)                                                           \
  X(REACH_RESOLVE, reach_resolve, REQUEST, provider)                                               \
  X(INSTANCE_LAUNCH, instance_launch, REQUEST, provider)                                           \
  X(INSTANCE_TERMINATE, instance_terminate, REQUEST, provider)                                     \
  X(INSTANCE_DESCRIBE, instance_describe, REQUEST, provider)                                       \
  X(INSTANCE_LIST, instance_list, REQUEST, provider)                                               \
  X(PREEMPT_CHECK, preempt_check, REQUEST, provider)                                               \
  X(CATALOG_REQUEST, catalog_request, REQUEST, provider)                                           \
  X(BOOTSTRAP, bootstrap, REQUEST, node)                                                           \
  X(SHUTDOWN, shutdown, REQUEST, none)                                                             \
  X(SSH_CONNECT, ssh_connect, REQUEST, node)                                                       \
  X(SSH_EXEC, ssh_exec, REQUEST, node)                                                             \
  X(SSH_CANCEL, ssh_cancel, REQUEST, node)                                                         \
  X(SSH_HOLD, ssh_hold, REQUEST, node)                                                             \
  X(SSH_UPLOAD, ssh_upload, REQUEST, node)                                                         \
  X(SSH_DOWNLOAD, ssh_download, REQUEST, node)                                                     \
  X(SSH_DISCONNECT, ssh_disconnect, REQUEST, node)                                                 \
  X(SSH_PING, ssh_ping, REQUEST, node)                                                             \
  /* facts */                                                                                      \
  X(REPLY_ERROR, reply_error, FACT, none)                                                          \
  X(DONE, done, FACT, none)                                                                        \
  X(POOL_READY, pool_ready, FACT, pool)                                                            \
  X(POOL_SHRUNK, pool_shrunk, FACT, pool)                                                          \
  X(POOL_CLOSED, pool_closed, FACT, pool)                                                          \
  X(REACH, reach, FACT, provider)                                                                  \
  X(INSTANCE_CREATED, instance_created, FACT, pool)                                                \
  X(INSTANCE_LAUNCHED, instance_launched, FACT, pool)                                              \
  X(INSTANCE_RUNNING, instance_running, FACT, pool)                                                \
  X(INSTANCE_TERMINATED, instance_terminated, FACT, pool)                                          \
  X(INSTANCE_PREEMPTED, instance_preempted, FACT, pool)                                            \
  X(INSTANCE_STATE, instance_state, FACT, provider)                                                \
  X(INSTANCE_LISTED, instance_listed, FACT, provider)                                              \
  X(PREEMPT_STATUS, preempt_status, FACT, node)                                                    \
  X(CATALOG, catalog, FACT, provider)                                                              \
  X(POOL_PLANNED, pool_planned, FACT, pool)                                                        \
  X(LAUNCH_FAILOVER, launch_failover, FACT, pool)                                                  \
  X(COST, cost, FACT, pool)                                                                        \
  X(NODE_STATE_CHANGED, node_state_changed, FACT, pool)                                            \
  X(NODE_READY, node_ready, FACT, pool)                                                            \
  X(NODE_LOST, node_lost, FACT, pool)                                                              \
  X(NODE_PREEMPTING, node_preempting, FACT, pool)                                                  \
  X(NODE_PREEMPTED, node_preempted, FACT, pool)                                                    \
  X(NODE_REPLACED, node_replaced, FACT, pool)                                                      \
  X(BOOTSTRAP_PROGRESS, bootstrap_progress, FACT, pool)                                            \
  X(BOOTSTRAP_DONE, bootstrap_done, FACT, pool)                                                    \
  X(SESSION_READY, session_ready, FACT, node)                                                      \
  X(SESSION_LOST, session_lost, FACT, node)                                                        \
  X(SESSION_CLOSED, session_closed, FACT, node)                                                    \
  X(TASK_STARTED, task_started, FACT, task)                                                        \
  X(TASK_OUTPUT, task_output, BULK, task)                                                          \
  X(TASK_FINISHED, task_finished, FACT, task)                                                      \
  X(TRANSFER_PROGRESS, transfer_progress, FACT, task)                                              \
  X(TRANSFER_DONE, transfer_done, FACT, task)                                                      \
  X(METRIC, metric, FACT, node)                                                                    \
  X(LOG, log, FACT, none)                                                                          \
  X(ERROR, error, FACT, pool)

/* ---- payloads ------------------------------------------------------------------------- */

#define KITE_EV_pool_open_FIELDS(F) F(U64, pool) F(STR, name) F(U32, nodes)
/* What it takes to reach the instances a pool would launch with (region, options) again from
 * another process: the provider resolves region, endpoint and account the way its launches
 * would. Reply: reach. */
#define KITE_EV_reach_resolve_FIELDS(F) F(STR, provider) F(STR, region) F(STR, options)
/* A launch asks the named provider for one instance for (pool, node, rank). options is the
 * provider's options as a JSON object text; user_data is a secret-bearing startup script.
 * zone: an availability zone inside region, or NULL. price_hourly and ondemand_hourly: what
 * the catalog says the instance costs (spot price when spot) and would cost on demand, or 0
 * when unknown; the provider reports them back in instance_launched when its API does not
 * say. accelerator and accelerator_count: the offer's accelerators ("T4", 1), or NULL and 0; a
 * provider that attaches them beside the type (Compute Engine's N1) attaches them, one whose
 * types carry their own takes them as said by the type. */
#define KITE_EV_instance_launch_FIELDS(F)                                                          \
  F(STR, provider)                                                                                 \
  F(U64, pool)                                                                                     \
  F(U64, node) F(U32, rank) F(STR, tag) F(STR, region) F(STR, instance_type) F(BOOL, spot)         \
      F(STR, image) F(STR, user_data) F(STR, launch_token) F(STR, options) F(STR, zone)            \
          F(DBL, price_hourly) F(DBL, ondemand_hourly) F(STR, accelerator)                         \
              F(U32, accelerator_count)
/* reach: the instance's reach record (a reach fact's text) when the instance may have been
 * launched by another process; the provider then asks exactly there, and takes "not found" as
 * gone only when it asks under the account the record names. NULL: an instance this process
 * launched. */
#define KITE_EV_instance_terminate_FIELDS(F)                                                       \
  F(STR, provider) F(U64, pool) F(U64, node) F(U32, rank) F(STR, instance_id) F(STR, reach)
#define KITE_EV_instance_describe_FIELDS(F) F(STR, provider) F(U64, node) F(STR, instance_id)
/* tag: one pool's tag; "*": every instance carrying any kite pool tag (then ids lines are
 * "ID TAG"). reach as in instance_terminate (NULL: where this process launches). */
#define KITE_EV_instance_list_FIELDS(F) F(STR, provider) F(STR, tag) F(STR, reach)
/* probe_output: what the provider's probe printed on the node since the last check, or empty. */
#define KITE_EV_preempt_check_FIELDS(F)                                                            \
  F(STR, provider) F(U64, pool) F(U64, node) F(U32, rank) F(STR, instance_id) F(BYTES, probe_output)
/* What the provider sells (offer.h), in region (NULL: every region it launches in), asked with
 * the provider options (JSON text, or NULL) a launch would use. Reply: catalog. */
#define KITE_EV_catalog_request_FIELDS(F) F(STR, provider) F(STR, region) F(STR, options)
/* timeout_ms: the script is killed after this long (the reply says KITE_ETIMEDOUT); 0: the
 * runner's own limit. */
#define KITE_EV_bootstrap_FIELDS(F)                                                                \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, script) F(I64, timeout_ms)
#define KITE_EV_shutdown_FIELDS(F) F(STR, reason)
/* hostkey_mode: a kite_hostkey_mode_t (transport.h); host_key: a pinned key in known_hosts
 * "type base64" form, or NULL. */
#define KITE_EV_ssh_connect_FIELDS(F)                                                              \
  F(U64, node)                                                                                     \
  F(STR, host)                                                                                     \
  F(U32, port) F(STR, user) F(STR, key_path) F(STR, host_key) F(I32, hostkey_mode)                 \
      F(I64, timeout_ms)
/* cmd: a shell script, run by /bin/sh in its own process group on the node (so a timeout or
 * a cancel stops all of it); env: newline-separated NAME=VALUE pairs exported before it, or
 * NULL. Output arrives as task_output keyed by task; the reply is task_finished. */
#define KITE_EV_ssh_exec_FIELDS(F)                                                                 \
  F(U64, pool)                                                                                     \
  F(U64, node) F(U64, task) F(U32, rank) F(U32, attempt) F(STR, cmd) F(STR, env) F(I64, timeout_ms)
#define KITE_EV_ssh_cancel_FIELDS(F) F(U64, node) F(U64, task)
/* hold true: stop reading a running command's output (the command blocks on its next write
 * once SSH's window is full) until a hold false. The output's consumer is behind (a slow
 * client of `kite exec`); nothing is dropped. Reply: done. */
#define KITE_EV_ssh_hold_FIELDS(F) F(U64, node) F(U64, task) F(BOOL, hold)
/* Copies local (a file or a tree) to remote; or, when content.ptr is set, writes content to
 * remote atomically. mode -1 keeps the local file's mode bits. Reply: transfer_done. */
#define KITE_EV_ssh_upload_FIELDS(F)                                                               \
  F(U64, node) F(U64, task) F(STR, local) F(STR, remote) F(I32, mode) F(BYTES, content)
#define KITE_EV_ssh_download_FIELDS(F) F(U64, node) F(U64, task) F(STR, remote) F(STR, local)
#define KITE_EV_ssh_disconnect_FIELDS(F) F(U64, node)
/* Is the node's SSH server answering on the existing session? (a channel opened and closed:
 * no process starts on the node). Reply: done{id = node}. */
#define KITE_EV_ssh_ping_FIELDS(F) F(U64, node) F(I64, timeout_ms)

#define KITE_EV_reply_error_FIELDS(F) F(ERR, code) F(STR, message)
#define KITE_EV_done_FIELDS(F) F(U64, id)
#define KITE_EV_pool_ready_FIELDS(F) F(U64, pool) F(STR, name) F(U32, ready) F(U32, nodes)
#define KITE_EV_pool_shrunk_FIELDS(F)                                                              \
  F(U64, pool) F(U32, nodes) F(U32, min_nodes) F(BOOL, usable) F(STR, reason)
#define KITE_EV_pool_closed_FIELDS(F) F(U64, pool) F(STR, name)
/* reach: a JSON object text, never a secret: {"provider": P, and what the provider needs to
 * find the instance again from any process: "region", "endpoint"/"api_url", "profile",
 * "account" (a fingerprint of the credential's identity)}. */
#define KITE_EV_reach_FIELDS(F) F(STR, provider) F(STR, reach)
/* The create call answered: the instance exists (not yet running). Emitted before the launch's
 * reply, so the store holds the id from that moment. */
#define KITE_EV_instance_created_FIELDS(F)                                                         \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, provider) F(STR, instance_id) F(STR, launch_token)
#define KITE_EV_instance_launched_FIELDS(F)                                                        \
  F(U64, pool)                                                                                     \
  F(U64, node)                                                                                     \
  F(U32, rank) F(STR, provider) F(STR, instance_id) F(STR, address) F(U32, port) F(STR, user)      \
      F(STR, host_key) F(DBL, price_hourly) F(STR, tag) F(STR, key_path) F(DBL, ondemand_hourly)   \
          F(BOOL, spot)
#define KITE_EV_instance_running_FIELDS(F)                                                         \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, provider) F(STR, instance_id) F(STR, address)
#define KITE_EV_instance_terminated_FIELDS(F)                                                      \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, provider) F(STR, instance_id)
#define KITE_EV_instance_preempted_FIELDS(F)                                                       \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, provider) F(STR, instance_id) F(STR, reason)
#define KITE_EV_instance_state_FIELDS(F)                                                           \
  F(STR, provider) F(U64, node) F(STR, instance_id) F(STR, state) F(STR, address)
/* ids: newline-separated provider instance ids. */
#define KITE_EV_instance_listed_FIELDS(F) F(STR, provider) F(STR, tag) F(U32, count) F(STR, ids)
/* state: 0 running, 1 notice given (deadline_ms is the wall-clock deadline), 2 preempted. */
/* probe: a command the preemption monitor runs on the node over its SSH session (a notice only
 * the node can see, like EC2's); its standard output comes back in the next preempt_check. */
#define KITE_EV_preempt_status_FIELDS(F)                                                           \
  F(STR, provider) F(U64, node) F(STR, instance_id) F(I32, state) F(I64, deadline_ms) F(STR, probe)
/* offers: a JSON array text of offers (offer.h: kite_offers_json), count of them; source
 * "api" (asked now) or where they came from. */
#define KITE_EV_catalog_FIELDS(F)                                                                  \
  F(STR, provider) F(STR, region) F(U32, count) F(STR, offers) F(STR, source)
/* The optimizer's choice for a pool (pool.h: kite_pool_plan): plan is a JSON object text
 * {"ranks": [{"rank", "provider", "region", "zone", "instance_type", "spot", "price"}...],
 * "candidates": [the same, in failover order], "hourly": the pool's rate}. */
#define KITE_EV_pool_planned_FIELDS(F)                                                             \
  F(U64, pool) F(STR, name) F(U32, nodes) F(DBL, hourly) F(STR, plan)
/* A launch (or relaunch) of rank goes elsewhere: from and to are "provider/region/type"
 * (with " spot" when spot; to is NULL when no candidate is left and the node fails), code
 * and reason what the provider said of from. attempt counts this node's launches. */
#define KITE_EV_launch_failover_FIELDS(F)                                                          \
  F(U64, pool)                                                                                     \
  F(U64, node) F(U32, rank) F(U32, attempt) F(STR, from) F(STR, to) F(ERR, code) F(STR, reason)
/* What a node's instance costs (node != 0), or the whole pool (node == 0, instance_id NULL:
 * the sum over every instance the pool ever had, replaced and preempted ones included):
 * rate_hourly now (USD/h, 0 once nothing runs), billable_s so far under the provider's
 * billing granularity, accumulated USD, and savings: what on-demand would have cost minus
 * accumulated (0 when not spot or the on-demand price is unknown). */
#define KITE_EV_cost_FIELDS(F)                                                                     \
  F(U64, pool)                                                                                     \
  F(U64, node)                                                                                     \
  F(U32, rank) F(STR, provider) F(STR, instance_id) F(DBL, rate_hourly) F(DBL, billable_s)         \
      F(DBL, accumulated) F(DBL, savings)
#define KITE_EV_node_state_changed_FIELDS(F)                                                       \
  F(U64, pool) F(U64, node) F(U32, rank) F(NSTATE, from) F(NSTATE, to) F(STR, reason)
#define KITE_EV_node_ready_FIELDS(F)                                                               \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, instance_id) F(STR, address) F(STR, provider)
#define KITE_EV_node_lost_FIELDS(F) F(U64, pool) F(U64, node) F(U32, rank) F(STR, reason)
#define KITE_EV_node_preempting_FIELDS(F) F(U64, pool) F(U64, node) F(U32, rank) F(I64, deadline_ms)
#define KITE_EV_node_preempted_FIELDS(F) F(U64, pool) F(U64, node) F(U32, rank) F(STR, reason)
#define KITE_EV_node_replaced_FIELDS(F)                                                            \
  F(U64, pool) F(U64, node) F(U32, rank) F(STR, old_instance) F(STR, new_instance)
#define KITE_EV_bootstrap_progress_FIELDS(F)                                                       \
  F(U64, pool) F(U64, node) F(U32, rank) F(U32, step) F(U32, total) F(STR, name)
#define KITE_EV_bootstrap_done_FIELDS(F)                                                           \
  F(U64, pool) F(U64, node) F(U32, rank) F(ERR, status) F(STR, failed_step) F(STR, output)
#define KITE_EV_session_ready_FIELDS(F) F(U64, node) F(STR, host) F(U32, port)
#define KITE_EV_session_lost_FIELDS(F) F(U64, node) F(ERR, error) F(STR, message)
#define KITE_EV_session_closed_FIELDS(F) F(U64, node)
#define KITE_EV_task_started_FIELDS(F)                                                             \
  F(U64, pool) F(U64, node) F(U64, task) F(U32, rank) F(U32, attempt)
/* stream: 1 stdout, 2 stderr. */
#define KITE_EV_task_output_FIELDS(F)                                                              \
  F(U64, pool) F(U64, node) F(U64, task) F(U32, rank) F(U32, attempt) F(U32, stream) F(BYTES, data)
/* error: 0 when the command ran to its end (then exit_status or signal says how), else why it
 * did not (KITE_ETIMEDOUT, KITE_ECANCELED, KITE_ECONNLOST, KITE_ENODELOST…). */
#define KITE_EV_task_finished_FIELDS(F)                                                            \
  F(U64, pool)                                                                                     \
  F(U64, node)                                                                                     \
  F(U64, task) F(U32, rank) F(U32, attempt) F(I32, exit_status) F(STR, signal) F(ERR, error)       \
      F(STR, message)
#define KITE_EV_transfer_progress_FIELDS(F) F(U64, node) F(U64, task) F(U64, done) F(U64, total)
#define KITE_EV_transfer_done_FIELDS(F)                                                            \
  F(U64, node) F(U64, task) F(ERR, error) F(U64, bytes) F(STR, message)
#define KITE_EV_metric_FIELDS(F) F(U64, node) F(STR, name) F(DBL, value) F(STR, unit)
#define KITE_EV_log_FIELDS(F) F(I32, level) F(STR, component) F(STR, message)
#define KITE_EV_error_FIELDS(F) F(U64, pool) F(U64, node) F(ERR, code) F(STR, message)

/* ---- generated types ------------------------------------------------------------------ */

#define KITE__FT_U64 uint64_t
#define KITE__FT_I64 int64_t
#define KITE__FT_U32 uint32_t
#define KITE__FT_I32 int32_t
#define KITE__FT_DBL double
#define KITE__FT_BOOL bool
#define KITE__FT_STR const char *
#define KITE__FT_BYTES kite_bytes_t
#define KITE__FT_NSTATE int32_t
#define KITE__FT_ERR int32_t
#define KITE__FIELD_DECL(kind, fname) KITE__FT_##kind fname;

#define KITE__EV_STRUCT(NAME, name, cls, keyf)                                                     \
  typedef struct kite_ev_##name {                                                                  \
    KITE_EV_##name##_FIELDS(KITE__FIELD_DECL)                                                      \
  } kite_ev_##name##_t;
KITE_EVENT_TABLE(KITE__EV_STRUCT)
#undef KITE__EV_STRUCT

typedef enum kite_event_type {
#define KITE__EV_ENUM(NAME, name, cls, keyf) KITE_EV_##NAME,
  KITE_EVENT_TABLE(KITE__EV_ENUM)
#undef KITE__EV_ENUM
      KITE_EV__COUNT
} kite_event_type_t;

typedef enum kite_event_class { KITE_EVC_REQUEST, KITE_EVC_FACT, KITE_EVC_BULK } kite_event_class_t;

/* "node_state_changed"; NULL for an unknown type. */
const char *kite_event_name(int type);
/* The type whose name is s, or -1. */
int kite_event_type_from_name(const char *s);
kite_event_class_t kite_event_class(int type);

#endif
