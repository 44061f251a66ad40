//! pcap / pcapng reading and writing (being written).
