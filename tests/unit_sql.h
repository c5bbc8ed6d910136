/* unit_sql: one integer read with SQL, for the tests that check a table. */
#pragma once

#include <sqlite3.h>
#include <stdint.h>

#include "unit.h"

/* The first column of the first row of sql on conn; -1 without a row. */
static inline int64_t unit_sql_int(sqlite3 *conn, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    REQUIRE(sqlite3_prepare_v2(conn, sql, -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}
