"""HEP version 3 (Homer's capture encapsulation): the sans-IO `codec` and the asyncio `sender`."""
