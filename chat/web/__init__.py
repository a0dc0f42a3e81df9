"""The browser product: sessions, conversations, server-owned generations, shares, pages."""
