"""The weights downloader: fills a Chute's weights cache from the hub, in the download Job's pod."""
