-- pgbench script: one stream.publish per transaction (bench/run.sh, section a).
-- The payload (~110 bytes of JSON) and the key are built exactly as in insert.sql.
\set order_id random(1, 1000000000)
\set customer random(1, 100000)
\set amount random(1, 100000)
SELECT * FROM stream.publish('bench',
    ('{"order_id": ' || :order_id || ', "customer": "c-' || :customer || '", "amount": ' || :amount || ', "currency": "EUR", "status": "created", "items": 3}')::jsonb,
    key => 'customer-' || :customer);
