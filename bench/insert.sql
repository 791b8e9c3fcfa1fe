-- pgbench script: one single-row INSERT per transaction into bench_insert, the plain
-- table shaped like a segment (bench/run.sh, section a). Same payload and key as publish.sql.
\set order_id random(1, 1000000000)
\set customer random(1, 100000)
\set amount random(1, 100000)
INSERT INTO bench_insert (key, value) VALUES ('customer-' || :customer,
    ('{"order_id": ' || :order_id || ', "customer": "c-' || :customer || '", "amount": ' || :amount || ', "currency": "EUR", "status": "created", "items": 3}')::jsonb);
