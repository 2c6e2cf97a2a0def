-- Version 3: the tag registry. Which NFC tag hangs in which client's home, from when to
-- when (both days inclusive; removed_on NULL while it still hangs there). A tag moved to
-- another home gets a new row; the old one keeps its dates.
CREATE TABLE tag_registrations (
    id           INTEGER PRIMARY KEY,
    tag_uid      TEXT NOT NULL,
    client       TEXT NOT NULL,
    installed_on TEXT NOT NULL,
    removed_on   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX tag_registrations_tag ON tag_registrations(tag_uid, installed_on);
CREATE INDEX tag_registrations_client ON tag_registrations(client);
