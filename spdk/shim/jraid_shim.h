/* jraid's C shim: what bindgen cannot see in SPDK's headers (macros, static inlines, variadics). */
#ifndef JRAID_SHIM_H
#define JRAID_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spdk_io_channel;
struct spdk_bdev_io;

/* spdk_io_channel_get_ctx (a static inline). */
void *jraid_io_channel_get_ctx(struct spdk_io_channel *ch);

/* spdk_bdev_io_from_ctx (a static inline over SPDK_CONTAINEROF). */
struct spdk_bdev_io *jraid_bdev_io_from_ctx(void *ctx);

/* The per-I/O driver context of a bdev_io (its flexible array member). */
void *jraid_bdev_io_driver_ctx(struct spdk_bdev_io *io);

/* Non-variadic spdk_log: `msg` is printed as is (no format expansion). Levels are
 * enum spdk_log_level values. */
void jraid_log(int level, const char *file, int line, const char *func, const char *msg);

/* Whether the "bdev_jraid" log component is enabled (SPDK_INFOLOG/SPDK_DEBUGLOG gate). */
bool jraid_log_flag_enabled(void);

/* Forces the shim's constructors (the log component registration) to be linked in. */
int jraid_shim_anchor(void);

#endif
