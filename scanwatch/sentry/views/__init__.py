"""Views for people: `scanwatch top` (live) and `scanwatch report` (the records in
pictures). Their libraries (rich, matplotlib) are imported only by these commands."""
