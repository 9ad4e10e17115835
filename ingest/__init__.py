"""Where usage events are born: the event schema, the gateway and the sinks that land events in the lake."""
