"""The VM descriptions that travel with the vmdk formats: VMware's .vmx and an OVF 1.0 envelope (VirtualBox)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

MEMORY_MIB = 1024


def vmx_text(name: str, vmdk: str) -> str:
    """A .vmx (key = "value" lines) with the disk on an LSI Logic SCSI controller and EFI firmware."""
    values = {
        ".encoding": "UTF-8",
        "config.version": "8",
        "virtualHW.version": "11",
        "displayName": name,
        "guestOS": "other5xlinux-64",
        "firmware": "efi",
        "memsize": str(MEMORY_MIB),
        "numvcpus": "2",
        "scsi0.present": "TRUE",
        "scsi0.virtualDev": "lsilogic",
        "scsi0:0.present": "TRUE",
        "scsi0:0.fileName": vmdk,
        "ethernet0.present": "TRUE",
        "ethernet0.virtualDev": "vmxnet3",
        "ethernet0.addressType": "generated",
        "serial0.present": "FALSE",
    }
    return "".join(f'{key} = "{value}"\n' for key, value in values.items())


def ovf_xml(name: str, vmdk: str, vmdk_size: int, capacity: int) -> str:
    """An OVF 1.0 envelope: one vmdk on an IDE controller, 2 CPUs, 1 GiB, one NAT NIC, EFI firmware."""
    n = escape(name)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href={quoteattr(vmdk)} ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks</Info>
    <Network ovf:name="NAT"><Description>NAT network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id={quoteattr(name)}>
    <Info>{n}</Info>
    <OperatingSystemSection ovf:id="101"><Info>Guest OS</Info><Description>Linux26_64</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{n}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>
      <Item><rasd:Caption>2 virtual CPU</rasd:Caption><rasd:ElementName>2 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:Caption>{MEMORY_MIB} MB of memory</rasd:Caption>
        <rasd:ElementName>{MEMORY_MIB} MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{MEMORY_MIB}</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:Caption>ideController0</rasd:Caption>
        <rasd:ElementName>ideController0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>PIIX4</rasd:ResourceSubType><rasd:ResourceType>5</rasd:ResourceType></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on NAT</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection><rasd:ElementName>Ethernet adapter on NAT</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:Caption>disk1</rasd:Caption>
        <rasd:ElementName>disk1</rasd:ElementName><rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>5</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.12-linux" name={quoteattr(name)}>
      <ovf:Info>VirtualBox machine settings</ovf:Info>
      <Hardware><Firmware type="EFI"/></Hardware>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>
"""
