-- Run once by the postgres image's entrypoint, when it initialises an empty data directory
-- (mounted into /docker-entrypoint-initdb.d by docker-compose.yml).
-- sagad: the saga log (sagad applies its migrations at startup).
-- sagad_demo: the demo participants' own business tables and idempotency barrier.
CREATE DATABASE sagad;
CREATE DATABASE sagad_demo;
