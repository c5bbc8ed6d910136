/* schema: the SQL embedded at build time from sql/ (see sql/embed.py).
 *
 * schema_migrations[i] brings the database from user_version i to i + 1;
 * schema_views is recreated at every start. */
#pragma once

extern const char *const schema_migrations[];
extern const unsigned schema_version;
extern const char schema_views[];
