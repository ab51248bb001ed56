-- A counter that every erasure moves on, in the transaction that destroys the subject's key:
-- a process that cached decrypted state compares it with the value it read before decrypting,
-- so an erasure made by any process sharing this file invalidates every cache.
CREATE TABLE eventsourcery_erasure_epoch (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    epoch   INTEGER NOT NULL
) STRICT;

INSERT INTO eventsourcery_erasure_epoch (id, epoch) VALUES (1, 0);
