/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  The retention background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_RETENTION_H
#define STREAM_RETENTION_H

extern void stream_retention_register(void);

#endif							/* STREAM_RETENTION_H */
