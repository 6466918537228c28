#ifndef KITE_ERROR_H
#define KITE_ERROR_H

/* Every kite function that can fail returns int: 0 on success, a negative KITE_E* code on
 * failure. Foreign errors (libuv, libcurl, libssh2, jansson, SQLite) are mapped onto these;
 * the original message is kept by the object that failed (see each module's last-error
 * accessor). */

#define KITE_ERRNO_MAP(X)                                                                    \
  X(EINVAL, "invalid argument")                                                              \
  X(ENOMEM, "out of memory")                                                                 \
  X(EIO, "input/output error")                                                               \
  X(ENOENT, "no such file, object or node")                                                  \
  X(EEXIST, "already exists")                                                                \
  X(EBUSY, "resource busy")                                                                  \
  X(EAGAIN, "resource temporarily unavailable; try again")                                   \
  X(ETIMEDOUT, "operation timed out")                                                        \
  X(ECANCELED, "operation canceled")                                                         \
  X(ECLOSED, "object is closing or closed")                                                  \
  X(ERECURSIVE, "call would re-enter dispatch")                                              \
  X(ENORESPONDER, "no component answers this request")                                      \
  X(ENOTSUP, "operation not supported")                                                      \
  X(E2BIG, "argument too large")                                                             \
  X(ECONNREFUSED, "connection refused")                                                      \
  X(ECONNLOST, "connection lost")                                                            \
  X(EHOSTUNREACH, "host unreachable or name not resolved")                                   \
  X(EAUTH, "authentication failed")                                                          \
  X(EHOSTKEY, "host key verification failed")                                                \
  X(EPROTO, "protocol error")                                                                \
  X(ESSH, "SSH error")                                                                       \
  X(ESFTP, "SFTP error")                                                                     \
  X(EHTTP, "HTTP error")                                                                     \
  X(EPROVIDER, "cloud provider error")                                                       \
  X(ECAPACITY, "provider has no capacity for this request")                                  \
  X(ECREDENTIALS, "credentials missing or rejected")                                         \
  X(ENODELOST, "node was lost")                                                              \
  X(EBOOTSTRAP, "bootstrap failed")                                                          \
  X(ETASK, "task failed")                                                                    \
  X(ESPEC, "invalid pool spec")                                                              \
  X(ESTORE, "state store error")                                                             \
  X(ESTATE, "invalid state for this operation")                                              \
  X(EINTERNAL, "internal error (a bug in kite)")                                             \
  X(EQUOTA, "account quota or limit reached at the provider")                                \
  X(EPRICE, "price above the bid or the cost ceiling")                                       \
  X(EUNAVAILABLE, "instance type not offered there")

typedef enum kite_errno {
  KITE_OK = 0,
  KITE__ERRNO_FIRST = -1000,
#define KITE__ERR_ENUM(name, msg) KITE_##name,
  KITE_ERRNO_MAP(KITE__ERR_ENUM)
#undef KITE__ERR_ENUM
  KITE__ERRNO_END
} kite_errno_t;

/* A static English description of err ("success" for 0, "unknown error" otherwise). */
const char *kite_strerror(int err);

/* The symbolic name of err, e.g. "KITE_ETIMEDOUT". */
const char *kite_err_name(int err);

/* Maps a negative libuv error code to the nearest kite code. */
int kite_err_from_uv(int uverr);

#endif
