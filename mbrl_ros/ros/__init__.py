"""ROS 2 adapters: message conversions, payload codecs, QoS profiles and diagnostics helpers."""
