-- Callbacks refused for a wrong token are not recorded one by one (a flood
-- must not fill the disk): each replica adds its count here periodically.
CREATE TABLE forged_callbacks (
    day   date PRIMARY KEY,
    count bigint NOT NULL
);
