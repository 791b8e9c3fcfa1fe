/*-------------------------------------------------------------------------
 *
 * privileges.h
 *	  Per-topic privileges: publish, consume, admin.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_PRIVILEGES_H
#define STREAM_PRIVILEGES_H

#include "postgres.h"

#include "nodes/nodes.h"

struct StreamTopic;

#define STREAM_PRIV_PUBLISH 0x01
#define STREAM_PRIV_CONSUME 0x02
#define STREAM_PRIV_ADMIN	0x04
#define STREAM_PRIV_ANY		(STREAM_PRIV_PUBLISH | STREAM_PRIV_CONSUME | STREAM_PRIV_ADMIN)

extern int	stream_parse_privilege(const char *name, bool allow_any);
extern const char *stream_privilege_name(int priv);
extern bool stream_has_privilege(struct StreamTopic *topic, int priv, Oid roleid);
extern void stream_check_privilege(struct StreamTopic *topic, int priv);
extern void stream_check_privilege_role(struct StreamTopic *topic, int priv, Oid roleid);

extern void stream_utility_roles(Node *parsetree);
extern bool stream_may_see_topic_id(int32 topic_id);

#endif							/* STREAM_PRIVILEGES_H */
