/* jraid's C shim: what bindgen cannot see in SPDK's headers (macros, static inlines, variadics). */
#include "jraid_shim.h"

#include "spdk/stdinc.h"
#include "spdk/bdev_module.h"
#include "spdk/log.h"
#include "spdk/thread.h"

/* Registers the "bdev_jraid" log component (a constructor; the archive is linked whole). */
SPDK_LOG_REGISTER_COMPONENT(bdev_jraid)

void *
jraid_io_channel_get_ctx(struct spdk_io_channel *ch)
{
	return spdk_io_channel_get_ctx(ch);
}

struct spdk_bdev_io *
jraid_bdev_io_from_ctx(void *ctx)
{
	return spdk_bdev_io_from_ctx(ctx);
}

void *
jraid_bdev_io_driver_ctx(struct spdk_bdev_io *io)
{
	return (void *)io->driver_ctx;
}

void
jraid_log(int level, const char *file, int line, const char *func, const char *msg)
{
	spdk_log((enum spdk_log_level)level, file, line, func, "%s\n", msg);
}

bool
jraid_log_flag_enabled(void)
{
	return SPDK_LOG_bdev_jraid.enabled;
}

int
jraid_shim_anchor(void)
{
	return 0;
}
