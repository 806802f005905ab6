#!/bin/sh
# Writes the SQL script of the sqlite workload on stdout: N single-row INSERTs (each
# statement is parsed and prepared, which is what makes sqlite3 allocate), a bulk
# insert of 4N rows, two indexes, aggregate queries, a self-join, updates and deletes.
#   sqlite_sql.sh [N]  (default 30000)  |  sqlite3 :memory:
n=${1:-30000}
cat <<SQL
PRAGMA cache_size = -200000;
CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT, v BLOB, n INTEGER);
BEGIN;
SQL
awk -v n="$n" 'BEGIN {
  srand(42);
  for (i = 1; i <= n; i++)
    printf "INSERT INTO kv(k, v, n) VALUES (%ckey-%08d-%d%c, randomblob(%d), %d);\n", 39, i, int(rand() * 1e6), 39, 20 + int(rand() * 200), int(rand() * 1000);
}'
cat <<SQL
COMMIT;
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4 * $n)
INSERT INTO kv(k, v, n)
  SELECT printf('bulk-%08d-%s', x, hex(randomblob(6))), randomblob(abs(random()) % 200 + 20), abs(random()) % 1000 FROM c;
COMMIT;
CREATE INDEX kv_k ON kv(k);
CREATE INDEX kv_n ON kv(n);
SELECT count(*), sum(length(v)) FROM kv WHERE n < 500;
SELECT n, count(*), avg(length(k)) FROM kv GROUP BY n ORDER BY 2 DESC, 1 LIMIT 3;
SELECT count(*) FROM kv a JOIN kv b ON a.n = b.n AND b.id BETWEEN a.id + 1 AND a.id + 50;
SELECT count(*) FROM kv WHERE k LIKE 'key-0001%';
SELECT k FROM kv ORDER BY v LIMIT 1 OFFSET 100;
UPDATE kv SET v = randomblob(64) WHERE n % 7 = 0;
DELETE FROM kv WHERE n % 3 = 0;
SELECT count(*), max(n) FROM kv;
SQL
