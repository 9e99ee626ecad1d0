-- The phone number an SMS or a call came from.
ALTER TABLE declarations ADD COLUMN sender TEXT;
